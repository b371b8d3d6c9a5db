//! Attachments: files uploaded into a room, sent with a message, and fetched
//! back by the room's members only.
//!
//! An upload streams to a staged file on disk (never whole in memory) while
//! its size is counted against the limit and its SHA-256 computed. Its type
//! is read from its first bytes. An image is checked for its pixel count
//! before it is decoded (a decompression bomb is refused from its header),
//! loses its metadata (EXIF: camera, place) and gets a thumbnail; then the
//! file store keeps the bytes under their hash, and a row records who may
//! read them. Sending a message claims its sender's uploads; deleting it
//! deletes their rows, and the sweep (below) forgets bytes no row names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::accounts::MyAccount;
use super::model::{Attachment, User, UserId};
use super::store::{Store, StoredAttachment};
use super::{Error, Natter, Result, now_ms, secrets};
use crate::files::media::{self, ImageLimits, MediaError};
use crate::files::{FileRead, FileStore};

/// What uploads may cost (docs/security.md, "Uploads").
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Largest image, in pixels (width × height), checked before decoding.
    pub max_pixels: u64,
    /// Uploads in flight per user, per node.
    pub per_user: usize,
    /// Uploads in flight per node.
    pub total: usize,
    /// An upload that sends nothing for this long is dropped.
    pub idle: Duration,
    /// An upload still not done after this long is dropped, however it
    /// trickles: a place is never held for ever.
    pub deadline: Duration,
    /// An upload not sent with a message within this long is forgotten.
    pub unsent_ttl: Duration,
    /// How often files no attachment names are looked for (and right after
    /// a message with attachments is deleted).
    pub sweep_every: Duration,
    /// A file younger than this is never swept: an upload writes its file
    /// before its row, so a new file names nothing for a moment.
    pub sweep_grace: Duration,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_bytes: 25 * 1024 * 1024,
            max_pixels: ImageLimits::default().max_pixels,
            per_user: 3,
            total: 64,
            idle: Duration::from_secs(30),
            deadline: Duration::from_secs(600),
            unsent_ttl: Duration::from_secs(24 * 3600),
            sweep_every: Duration::from_secs(600),
            sweep_grace: Duration::from_secs(600),
        }
    }
}

/// Images decoded at once per node: each may take hundreds of MB for a moment.
const IMAGES_AT_ONCE: usize = 2;

/// The file store and the budgets of uploads (one per node).
pub struct Uploads {
    files: Arc<dyn FileStore>,
    limits: UploadLimits,
    node: Arc<Semaphore>,
    /// Uploads in flight per user; an entry goes when its count is back to 0
    /// (so that no expiry can hand out a fresh budget while uploads run).
    per_user: Arc<Mutex<HashMap<UserId, usize>>>,
    images: Arc<Semaphore>,
    /// Uploads hold it for reading from writing their files to recording
    /// their rows; the sweep for writing from checking a file to deleting it.
    /// So on one node the sweep never deletes a file an upload has just
    /// written, nor one whose row is being recorded.
    files_in_flux: tokio::sync::RwLock<()>,
    /// Wakes the sweep early (a message with attachments was deleted).
    sweep_now: Arc<tokio::sync::Notify>,
}

/// One upload's places in the budgets; dropping it gives them back.
struct Places {
    per_user: Arc<Mutex<HashMap<UserId, usize>>>,
    user: UserId,
    _node: OwnedSemaphorePermit,
}

impl Drop for Places {
    fn drop(&mut self) {
        let mut counts = self.per_user.lock().expect("upload counts");
        if let Some(n) = counts.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

impl Uploads {
    pub fn new(files: Arc<dyn FileStore>, limits: UploadLimits) -> Self {
        Uploads {
            node: Arc::new(Semaphore::new(limits.total)),
            per_user: Arc::new(Mutex::new(HashMap::new())),
            files_in_flux: tokio::sync::RwLock::new(()),
            images: Arc::new(Semaphore::new(IMAGES_AT_ONCE)),
            sweep_now: Arc::new(tokio::sync::Notify::new()),
            files,
            limits,
        }
    }

    pub fn limits(&self) -> &UploadLimits {
        &self.limits
    }

    /// A place for one more upload of `user`: `rate_limited` past their
    /// own budget, `unavailable` when the node is full.
    fn admit(&self, user: UserId) -> Result<Places> {
        let mut counts = self.per_user.lock().expect("upload counts");
        let mine = counts.entry(user).or_insert(0);
        if *mine >= self.limits.per_user {
            return Err(Error::RateLimited);
        }
        let node = self
            .node
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Unavailable)?;
        *mine += 1;
        Ok(Places {
            per_user: self.per_user.clone(),
            user,
            _node: node,
        })
    }
}

/// A staged file, removed when dropped unless handed to the file store.
struct Staged(Option<PathBuf>);

impl Staged {
    fn new(files: &dyn FileStore) -> Self {
        Staged(Some(
            files
                .staging_dir()
                .join(format!("upload-{}", secrets::new_session_id())),
        ))
    }

    fn path(&self) -> PathBuf {
        self.0.clone().expect("not taken yet")
    }

    /// The path, now the file store's to move or remove.
    fn take(mut self) -> PathBuf {
        self.0.take().expect("taken once")
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a file, read in blocks (an image after its metadata went).
fn hash_file(path: &std::path::Path) -> std::io::Result<(String, u64)> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let (mut hasher, mut size) = (Sha256::new(), 0u64);
    let mut block = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut block)? {
            0 => return Ok((hex(hasher.finalize()), size)),
            n => {
                hasher.update(&block[..n]);
                size += n as u64;
            }
        }
    }
}

fn io_fault(e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("file storage: {e}"))
}

/// What is kept of an inline image: its metadata-free copy, its displayed
/// size and its thumbnail (all staged).
struct KeptImage {
    file: Staged,
    key: String,
    size: u64,
    width: u32,
    height: u32,
    thumbnail: Staged,
    thumbnail_key: String,
    thumbnail_type: &'static str,
}

/// Whether a file of this type is shown in the page (and served `inline`):
/// the picture types browsers draw, and nothing else (never SVG or HTML).
pub fn shown_inline(content_type: &str) -> bool {
    media::INLINE_IMAGES.contains(&content_type)
}

/// A file being fetched: what it is, the type to serve it as, its bytes.
pub struct Download {
    pub attachment: Attachment,
    /// The file's type, or the thumbnail's.
    pub content_type: String,
    pub body: FileRead,
}

impl Natter {
    /// Turns on attachments, kept by `files`, and starts their sweep.
    pub fn with_uploads(mut self, uploads: Uploads) -> Self {
        let uploads = Arc::new(uploads);
        tokio::spawn(sweep_loop(
            Arc::downgrade(&uploads),
            self.store.clone(),
            uploads.sweep_now.clone(),
        ));
        self.uploads = Some(uploads);
        self
    }

    fn uploads(&self) -> Result<&Arc<Uploads>> {
        self.uploads
            .as_ref()
            .ok_or_else(|| Error::invalid("this server takes no attachments"))
    }

    /// The largest file an upload may be (pages show it), if uploads are on.
    pub fn max_upload_bytes(&self) -> Option<u64> {
        self.uploads.as_ref().map(|u| u.limits.max_bytes)
    }

    /// Receives a file into room `rid` from a member, streamed from `body`,
    /// and keeps it; it is theirs to send with a message (see [`Natter::send`]).
    pub async fn upload<S, E>(
        &self,
        me: &User,
        rid: &str,
        name: Result<String>,
        mut body: S,
    ) -> Result<Attachment>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let uploads = self.uploads()?;
        super::bots::allow(me, super::bots::Need::Send, Some(rid))?;
        self.budgets.event(me.id)?;
        let name = name?;
        self.require_member(me, rid).await?;
        let _places = uploads.admit(me.id)?;
        let limits = &uploads.limits;

        let staged = Staged::new(&*uploads.files);
        let mut file = tokio::fs::File::create(staged.path())
            .await
            .map_err(io_fault)?;
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        let mut head = Vec::with_capacity(media::SNIFF_BYTES);
        let deadline = tokio::time::Instant::now() + limits.deadline;
        loop {
            let wait = limits
                .idle
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let chunk = match tokio::time::timeout(wait, body.next()).await {
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::invalid(format!(
                        "the upload took longer than {} s",
                        limits.deadline.as_secs()
                    )));
                }
                Err(_) => {
                    return Err(Error::invalid(format!(
                        "the upload sent nothing for {} s",
                        limits.idle.as_secs()
                    )));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(Error::invalid(format!("the upload broke off: {e}")));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            size += chunk.len() as u64;
            if size > limits.max_bytes {
                return Err(Error::FileTooLarge(limits.max_bytes));
            }
            let wanted = (media::SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..wanted]);
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io_fault)?;
        }
        file.flush().await.map_err(io_fault)?;
        drop(file);
        if size == 0 {
            return Err(Error::invalid("the file is empty"));
        }

        let mut attachment = Attachment {
            id: secrets::new_room_id(),
            name,
            content_type: media::sniff(&head).to_owned(),
            size,
            width: None,
            height: None,
            has_thumbnail: false,
        };
        let mut record = StoredAttachment {
            attachment: attachment.clone(),
            rid: rid.to_owned(),
            uploader_id: me.id,
            message_id: None,
            file_key: hex(hasher.finalize()),
            thumbnail_key: None,
            thumbnail_type: None,
            created_at: now_ms(),
        };
        let mut file = staged;
        let mut thumbnail = None;
        if shown_inline(&attachment.content_type) {
            match self
                .keep_image(uploads, file, &attachment.content_type)
                .await?
            {
                Ok(image) => {
                    attachment.size = image.size;
                    attachment.width = Some(image.width);
                    attachment.height = Some(image.height);
                    attachment.has_thumbnail = true;
                    record.file_key = image.key;
                    record.thumbnail_type = Some(image.thumbnail_type.to_owned());
                    record.thumbnail_key = Some(image.thumbnail_key.clone());
                    thumbnail = Some((image.thumbnail_key, image.thumbnail));
                    file = image.file;
                }
                // Not an image after all (a picture's signature on broken
                // bytes): kept as a file to download, as it came.
                Err(original) => {
                    attachment.content_type = "application/octet-stream".to_owned();
                    file = original;
                }
            }
        }
        let _writing = uploads.files_in_flux.read().await;
        if let Some((key, staged)) = thumbnail {
            uploads
                .files
                .put(&key, staged.take())
                .await
                .map_err(io_fault)?;
        }
        uploads
            .files
            .put(&record.file_key, file.take())
            .await
            .map_err(io_fault)?;
        record.attachment = attachment.clone();
        self.store.create_attachment(&record).await?;
        Ok(attachment)
    }

    /// Checks, strips and thumbnails an inline image. `Ok(Err(original))`
    /// when its bytes do not decode; an error when it is refused (too many
    /// pixels) or the work failed.
    async fn keep_image(
        &self,
        uploads: &Uploads,
        original: Staged,
        content_type: &str,
    ) -> Result<std::result::Result<KeptImage, Staged>> {
        let _decoding = uploads
            .images
            .clone()
            .acquire_owned()
            .await
            .map_err(io_fault)?;
        let limits = ImageLimits {
            max_pixels: uploads.limits.max_pixels,
            ..ImageLimits::default()
        };
        let (stripped, thumbnail) = (Staged::new(&*uploads.files), Staged::new(&*uploads.files));
        let (source, target, thumb_path) = (original.path(), stripped.path(), thumbnail.path());
        let content_type = content_type.to_owned();
        let work = tokio::task::spawn_blocking(move || {
            let processed = media::process_image(&source, &content_type, &limits)?;
            media::strip_metadata(&content_type, &source, &target)?;
            let (key, size) = hash_file(&target)?;
            std::fs::write(&thumb_path, &processed.thumbnail)?;
            let (thumbnail_key, _) = hash_file(&thumb_path)?;
            Ok::<_, MediaError>((processed, key, size, thumbnail_key))
        })
        .await
        .map_err(io_fault)?;
        match work {
            Ok((processed, key, size, thumbnail_key)) => Ok(Ok(KeptImage {
                file: stripped,
                key,
                size,
                width: processed.width,
                height: processed.height,
                thumbnail,
                thumbnail_key,
                thumbnail_type: processed.thumbnail_type,
            })),
            Err(MediaError::TooManyPixels { width, height, max }) => Err(Error::invalid(format!(
                "the image is {width}×{height} pixels; at most {max} pixels are taken"
            ))),
            Err(MediaError::Undecodable(_)) => Ok(Err(original)),
            Err(MediaError::Io(e)) => Err(io_fault(e)),
        }
    }

    /// The attachments a send names, as its message will carry them: each
    /// must be the sender's own upload into that room. Whether it is still
    /// unsent is the store's to check, in the transaction that claims it (a
    /// resend of the same message finds them claimed by its first copy).
    pub(super) async fn attachments_to_send(
        &self,
        me: &User,
        rid: &str,
        ids: Vec<String>,
    ) -> Result<Vec<Attachment>> {
        let mut attachments = Vec::with_capacity(ids.len());
        for id in ids {
            match self.store.attachment(&id).await? {
                Some(found) if found.rid == rid && found.uploader_id == me.id => {
                    attachments.push(found.attachment);
                }
                _ => return Err(Error::NoSuchAttachment),
            }
        }
        Ok(attachments)
    }

    /// An attachment's bytes (or its thumbnail's), for a member of its room.
    /// One not sent yet is its uploader's alone; a removed member gets
    /// `not_member`, whatever they fetched before.
    pub async fn download(&self, me: &User, id: &str, thumbnail: bool) -> Result<Download> {
        let uploads = self.uploads()?;
        let found = self
            .store
            .attachment(id)
            .await?
            .ok_or(Error::NoSuchAttachment)?;
        if found.message_id.is_none() && found.uploader_id != me.id {
            return Err(Error::NoSuchAttachment);
        }
        super::bots::allow(me, super::bots::Need::Read, Some(&found.rid))?;
        self.require_member(me, &found.rid).await?;
        let (key, content_type) = if thumbnail {
            match (found.thumbnail_key, found.thumbnail_type) {
                (Some(key), Some(kind)) => (key, kind),
                _ => return Err(Error::NoSuchAttachment),
            }
        } else {
            (found.file_key, found.attachment.content_type.clone())
        };
        let body = uploads
            .files
            .get(&key)
            .await
            .map_err(io_fault)?
            .ok_or(Error::NoSuchAttachment)?;
        Ok(Download {
            attachment: found.attachment,
            content_type,
            body,
        })
    }

    /// A message with attachments was deleted: sweep its files soon.
    pub(super) fn files_released(&self) {
        if let Some(uploads) = &self.uploads {
            uploads.sweep_now.notify_one();
        }
    }
}

/// Sweeps every [`UploadLimits::sweep_every`], or when woken, for as long
/// as the uploads live.
async fn sweep_loop(
    uploads: std::sync::Weak<Uploads>,
    store: Arc<dyn Store>,
    wake: Arc<tokio::sync::Notify>,
) {
    loop {
        let every = match uploads.upgrade() {
            Some(uploads) => {
                if let Err(e) = sweep(&uploads, &*store).await {
                    tracing::warn!(error = %e, "the sweep of unused files failed");
                }
                uploads.limits.sweep_every
            }
            None => return,
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = wake.notified() => {}
        }
    }
}

/// Files checked and deleted at once while sweeping (uploads wait for each batch).
const SWEEP_BATCH: usize = 50;

/// Forgets the uploads never sent in time, then every file that no
/// attachment names and that is older than the grace period. Returns how
/// many files went.
async fn sweep(uploads: &Uploads, store: &dyn Store) -> anyhow::Result<usize> {
    let ttl = i64::try_from(uploads.limits.unsent_ttl.as_millis()).unwrap_or(i64::MAX);
    store
        .expire_unsent_attachments(now_ms().saturating_sub(ttl))
        .await?;
    let settled = SystemTime::now()
        .checked_sub(uploads.limits.sweep_grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let candidates: Vec<String> = uploads
        .files
        .list()
        .await?
        .into_iter()
        .filter(|f| f.modified <= settled)
        .map(|f| f.key)
        .collect();
    let mut swept = 0;
    for keys in candidates.chunks(SWEEP_BATCH) {
        // Uploads wait meanwhile (see `Uploads::files_in_flux`): batches
        // are small, so they wait little.
        let _checking = uploads.files_in_flux.write().await;
        let in_use = store.files_in_use(keys).await?;
        for key in keys.iter().filter(|k| !in_use.contains(k)) {
            uploads.files.delete(key).await?;
            swept += 1;
        }
    }
    if swept > 0 {
        tracing::info!(files = swept, "swept files no attachment names");
    }
    Ok(swept)
}

/// Largest avatar upload, in bytes (what is kept is its thumbnail).
pub const MAX_AVATAR_BYTES: usize = 5 * 1024 * 1024;

/// An avatar being fetched: its type (`image/jpeg` or `image/png`) and bytes.
pub struct Avatar {
    pub content_type: &'static str,
    pub body: FileRead,
}

impl Natter {
    /// Sets my avatar from a PNG, JPEG, GIF or WebP image streamed from
    /// `body` (at most [`MAX_AVATAR_BYTES`], in the uploads' time budgets).
    /// What is kept is its thumbnail: at most 400 px, upright, without
    /// metadata. Everyone in my rooms gets the rooms anew.
    pub async fn set_avatar<S, E>(&self, me: &User, mut body: S) -> Result<MyAccount>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        let uploads = self.uploads()?;
        self.budgets.event(me.id)?;
        let _places = uploads.admit(me.id)?;
        let limits = &uploads.limits;
        let deadline = tokio::time::Instant::now() + limits.deadline;
        let mut bytes = Vec::new();
        loop {
            let wait = limits
                .idle
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, body.next()).await {
                Err(_) => return Err(Error::invalid("the upload was too slow")),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(Error::invalid(format!("the upload broke off: {e}")));
                }
                Ok(Some(Ok(chunk))) if bytes.len() + chunk.len() > MAX_AVATAR_BYTES => {
                    return Err(Error::FileTooLarge(MAX_AVATAR_BYTES as u64));
                }
                Ok(Some(Ok(chunk))) => bytes.extend_from_slice(&chunk),
            }
        }
        let content_type = media::sniff(&bytes[..bytes.len().min(media::SNIFF_BYTES)]);
        if !shown_inline(content_type) {
            return Err(Error::invalid(
                "an avatar must be a PNG, JPEG, GIF or WebP image",
            ));
        }
        let _decoding = uploads
            .images
            .clone()
            .acquire_owned()
            .await
            .map_err(io_fault)?;
        let (original, thumbnail) = (Staged::new(&*uploads.files), Staged::new(&*uploads.files));
        let (source, target) = (original.path(), thumbnail.path());
        let image_limits = ImageLimits {
            max_pixels: limits.max_pixels,
            ..ImageLimits::default()
        };
        let work = tokio::task::spawn_blocking(move || {
            std::fs::write(&source, &bytes)?;
            let processed = media::process_image(&source, content_type, &image_limits)?;
            std::fs::write(&target, &processed.thumbnail)?;
            Ok::<_, MediaError>(hash_file(&target)?.0)
        })
        .await
        .map_err(io_fault)?;
        let key = match work {
            Ok(key) => key,
            Err(MediaError::TooManyPixels { width, height, max }) => {
                return Err(Error::invalid(format!(
                    "the image is {width}×{height} pixels; at most {max} pixels are taken"
                )));
            }
            Err(MediaError::Undecodable(_)) => {
                return Err(Error::invalid("the image cannot be read"));
            }
            Err(MediaError::Io(e)) => return Err(io_fault(e)),
        };
        let _writing = uploads.files_in_flux.read().await;
        uploads
            .files
            .put(&key, thumbnail.take())
            .await
            .map_err(io_fault)?;
        self.replace_avatar(me, Some(&key)).await
    }

    /// Removes my avatar.
    pub async fn remove_avatar(&self, me: &User) -> Result<MyAccount> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        self.replace_avatar(me, None).await
    }

    async fn replace_avatar(&self, me: &User, key: Option<&str>) -> Result<MyAccount> {
        let old = self.store.set_avatar(me.id, key).await?;
        if old.is_some() && old.as_deref() != key {
            self.files_released();
        }
        self.tell_my_rooms(me).await?;
        self.my_account(me).await
    }

    /// A user's avatar, for anyone signed in.
    pub async fn avatar(&self, me: &User, user: Result<UserId>) -> Result<Avatar> {
        super::bots::allow(me, super::bots::Need::Read, None)?;
        let uploads = self.uploads()?;
        self.budgets.event(me.id)?;
        let key = self
            .store
            .profile(user?)
            .await?
            .avatar_key
            .ok_or(Error::NoAvatar)?;
        let mut read = uploads
            .files
            .get(&key)
            .await
            .map_err(io_fault)?
            .ok_or(Error::NoAvatar)?;
        // Thumbnails are JPEG or PNG: the first chunk says which.
        let first = match read.body.next().await {
            Some(chunk) => chunk.map_err(io_fault)?,
            None => return Err(Error::NoAvatar),
        };
        let content_type = match media::sniff(&first) {
            "image/png" => "image/png",
            _ => "image/jpeg",
        };
        let rest = std::mem::replace(&mut read.body, Box::pin(futures_util::stream::empty()));
        read.body = Box::pin(futures_util::stream::once(async { Ok(first) }).chain(rest));
        Ok(Avatar {
            content_type,
            body: read,
        })
    }
}

/// The most bytes of files an export archive holds; past it, the files
/// left out are listed (with their URLs) in `files-left-out.txt`.
pub const MAX_EXPORT_FILE_BYTES: u64 = 1 << 30;

/// A part of an export archive on its way to the thread that writes it.
enum ArchivePart {
    /// A new entry, by its name in the archive.
    Entry(String),
    /// The next bytes of the current entry.
    Bytes(Bytes),
}

impl Natter {
    /// My data as one ZIP download: `export.json` (what [`Natter::export`]
    /// answers), each file of my messages under `files/ID-NAME`, and my
    /// avatar, at most [`MAX_EXPORT_FILE_BYTES`] of files. The archive is
    /// written to a staged file (files stream through, never whole in
    /// memory), which is gone from the disk once its reader is dropped.
    pub async fn export_archive(&self, session: &super::Session) -> Result<FileRead> {
        let export = self.export(session).await?;
        let uploads = self.uploads()?;
        let staged = Staged::new(&*uploads.files);
        let path = staged.path();
        let (parts, received) = tokio::sync::mpsc::channel::<ArchivePart>(8);
        let writer = tokio::task::spawn_blocking(move || write_archive(&path, received));
        let send = |part| async { parts.send(part).await.map_err(io_fault) };

        let json = serde_json::to_vec_pretty(&export).map_err(io_fault)?;
        send(ArchivePart::Entry("export.json".to_owned())).await?;
        send(ArchivePart::Bytes(json.into())).await?;
        let mut sources = Vec::new();
        for file in &export.files {
            if let Some(found) = self.store.attachment(&file.attachment.id).await? {
                let name = format!("files/{}-{}", file.attachment.id, file.attachment.name);
                sources.push((name, found.file_key, file.attachment.url()));
            }
        }
        if let Some(key) = self.store.profile(session.user.id).await?.avatar_key {
            sources.push(("avatar".to_owned(), key, String::new()));
        }
        let (mut total, mut left_out) = (0u64, Vec::new());
        for (name, key, url) in sources {
            let Some(mut read) = uploads.files.get(&key).await.map_err(io_fault)? else {
                continue;
            };
            if total + read.size > MAX_EXPORT_FILE_BYTES {
                left_out.push(format!("{name} {url}"));
                continue;
            }
            total += read.size;
            send(ArchivePart::Entry(name)).await?;
            while let Some(chunk) = read.body.next().await {
                send(ArchivePart::Bytes(chunk.map_err(io_fault)?)).await?;
            }
        }
        if !left_out.is_empty() {
            send(ArchivePart::Entry("files-left-out.txt".to_owned())).await?;
            send(ArchivePart::Bytes(left_out.join("\n").into())).await?;
        }
        drop(parts);
        writer.await.map_err(io_fault)?.map_err(io_fault)?;
        let file = tokio::fs::File::open(staged.path())
            .await
            .map_err(io_fault)?;
        let size = file.metadata().await.map_err(io_fault)?.len();
        // Open, the file stays readable; its name goes now.
        drop(staged);
        Ok(FileRead {
            size,
            body: Box::pin(tokio_util::io::ReaderStream::new(file)),
        })
    }
}

/// Writes the parts it receives into a ZIP archive at `path` (stored
/// entries: pictures are compressed already).
fn write_archive(
    path: &std::path::Path,
    mut parts: tokio::sync::mpsc::Receiver<ArchivePart>,
) -> std::io::Result<()> {
    use std::io::Write as _;
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let mut archive = zip::ZipWriter::new(std::fs::File::create(path)?);
    while let Some(part) = parts.blocking_recv() {
        match part {
            ArchivePart::Entry(name) => archive
                .start_file(name, options)
                .map_err(std::io::Error::other)?,
            ArchivePart::Bytes(bytes) => archive.write_all(&bytes)?,
        }
    }
    archive.finish().map_err(std::io::Error::other)?;
    Ok(())
}
