//! The embedded file store: a content-addressed directory on local disk.
//!
//! ```text
//! DIR/                 mode 0700
//!   tmp/               staging: uploads are written here, then renamed into place
//!   ab/cd/abcd…(64)    a kept file, under the first two byte pairs of its key
//! ```
//!
//! Two levels of folders keep every directory small (at most 256 entries
//! per level above the files) however many files are kept. Staging lives in
//! the same directory, hence on the same file system, so that keeping a file
//! is a rename: atomic, and no copy of its bytes.

use std::fs::{self, DirBuilder, File};
use std::io::{self, ErrorKind};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use async_trait::async_trait;
use tokio_util::io::ReaderStream;

use super::{FileError, FileRead, FileResult, FileStore, StoredFile, check_key};

/// The staging folder, inside the store's directory.
const STAGING: &str = "tmp";

/// A staged file older than this was left by a crash: an upload in flight
/// writes to its staged file until it is put, which takes far less.
const STALE_STAGED: Duration = Duration::from_secs(60 * 60);

/// How much of a file [`FileStore::get`] reads at a time: what is in memory
/// per download, whatever the file's size.
const READ_CHUNK: usize = 64 * 1024;

/// Files kept in a local directory (see the module docs for its layout).
#[derive(Debug)]
pub struct LocalFiles {
    root: PathBuf,
    staging: PathBuf,
}

impl LocalFiles {
    /// Opens the store in `dir`, creating it (mode 0700: attachments are
    /// private) and its staging folder, and removes what crashed uploads
    /// left in staging. Staged files younger than an hour are left alone:
    /// they may be uploads in flight from a server sharing the directory.
    pub fn open(dir: &Path) -> anyhow::Result<LocalFiles> {
        let staging = dir.join(STAGING);
        private_dirs()
            .recursive(true)
            .create(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        remove_stale(&staging).with_context(|| format!("cannot clean up {}", staging.display()))?;
        Ok(LocalFiles {
            root: dir.to_path_buf(),
            staging,
        })
    }

    /// Where the file `key` is kept. Only ever called with a checked key, so
    /// that the path cannot leave the store's directory.
    fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(&key[..2]).join(&key[2..4]).join(key)
    }
}

#[async_trait]
impl FileStore for LocalFiles {
    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    async fn put(&self, key: &str, path: PathBuf) -> FileResult<()> {
        if let Err(e) = check_key(key) {
            remove_staged(&path).await;
            return Err(e);
        }
        let target = self.path_of(key);
        let root = self.root.clone();
        let staged = path.clone();
        let kept = blocking(move || keep(&root, &staged, &target)).await;
        if kept.is_err() {
            remove_staged(&path).await;
        }
        kept
    }

    async fn get(&self, key: &str) -> FileResult<Option<FileRead>> {
        check_key(key)?;
        let file = match tokio::fs::File::open(self.path_of(key)).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // The size of the open file: a delete after the open does not
        // shorten what is read (the bytes stay until the file is closed).
        let size = file.metadata().await?.len();
        Ok(Some(FileRead {
            size,
            body: Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)),
        }))
    }

    /// Removes the file but not its folders: they are few (see the module
    /// docs) and a later file may need them. Not made durable with an fsync:
    /// should a crash bring a deleted file back, the next sweep deletes it
    /// again.
    async fn delete(&self, key: &str) -> FileResult<()> {
        check_key(key)?;
        match tokio::fs::remove_file(self.path_of(key)).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn list(&self) -> FileResult<Vec<StoredFile>> {
        let root = self.root.clone();
        blocking(move || walk(&root)).await
    }
}

/// Runs blocking file-system work (fsync, rename, directory walks) off the
/// async worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> FileResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| FileError::Storage(format!("file store task failed: {e}")))?
        .map_err(FileError::from)
}

fn private_dirs() -> DirBuilder {
    let mut builder = DirBuilder::new();
    builder.mode(0o700);
    builder
}

/// Keeps the staged file `staged` as `target`, durably: its bytes reach the
/// disk before its name appears (so a crash cannot leave a named but empty or
/// partial file), and the rename reaches the disk before `put` returns (so a
/// kept file does not vanish in a crash after the attachment naming it is
/// committed).
fn keep(root: &Path, staged: &Path, target: &Path) -> io::Result<()> {
    // A kept key holds the same bytes (it is their hash): nothing to write,
    // but the sweep must see the file as new, or it could delete it under
    // the attachment about to name it.
    match File::open(target) {
        Ok(existing) => {
            existing.set_modified(SystemTime::now())?;
            fs::remove_file(staged)?;
            return Ok(());
        }
        // Absent, or deleted since: keep the staged file instead.
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    File::open(staged)?.sync_all()?;
    let folder = target.parent().expect("a kept file is in a folder");
    let top = folder.parent().expect("a folder is in a top folder");
    make_dir(top, root)?;
    make_dir(folder, top)?;
    fs::rename(staged, target)?;
    sync_dir(folder)
}

/// Creates the folder `dir` unless it exists, and makes its entry in
/// `parent` durable, so that the files put in it are found after a crash.
fn make_dir(dir: &Path, parent: &Path) -> io::Result<()> {
    match private_dirs().create(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes the entries of `dir` (a file renamed or a folder created in it)
/// durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a staged file that will not be kept (`put` consumes it even when
/// it fails). Best effort: a file it misses is removed by the next `open`.
async fn remove_staged(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a staged upload");
    }
}

/// Removes the files in `staging` last written more than [`STALE_STAGED`] ago.
fn remove_stale(staging: &Path) -> io::Result<()> {
    let now = SystemTime::now();
    for entry in fs::read_dir(staging)? {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // A clock set back makes `duration_since` fail: not stale, then.
        let age = now.duration_since(meta.modified()?).unwrap_or_default();
        if meta.is_file() && age > STALE_STAGED {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a stale staged upload");
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Every kept file under `root`: the files named by a key in the folders of
/// its first two byte pairs. Anything else (staging, stray files) is not a
/// kept file and is skipped; so are entries deleted during the walk.
fn walk(root: &Path) -> io::Result<Vec<StoredFile>> {
    let mut files = Vec::new();
    for top in hex_pairs(root)? {
        for folder in hex_pairs(&top)? {
            for entry in entries(&folder)? {
                let Some(key) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if check_key(&key).is_err() || folder != root.join(&key[..2]).join(&key[2..4]) {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if meta.is_file() {
                    files.push(StoredFile {
                        key,
                        modified: meta.modified()?,
                    });
                }
            }
        }
    }
    Ok(files)
}

/// The folders in `dir` named by two lowercase hex digits.
fn hex_pairs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(entries(dir)?
        .into_iter()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.as_encoded_bytes();
            name.len() == 2
                && name.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                && entry.file_type().is_ok_and(|t| t.is_dir())
        })
        .map(|entry| entry.path())
        .collect())
}

/// The entries of `dir`; none when it was deleted meanwhile.
fn entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
