//! Where attachments' bytes live: one [`FileStore`] trait, with a local,
//! content-addressed directory (the embedded default, `local.rs`) and
//! S3-compatible object storage for a cluster (`s3.rs`); and what is done to
//! an upload before it is kept (`media.rs`: its type from its bytes,
//! metadata stripped, image dimensions and thumbnails).
//!
//! A file's key is the SHA-256 of its bytes in lowercase hex: the same bytes
//! are kept once, and writing a key twice is harmless. Which attachment rows
//! name a key is the database's business; the store only keeps bytes.

pub mod local;
pub mod media;
pub mod s3;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

pub type FileResult<T> = Result<T, FileError>;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The key is not 64 lowercase hex digits: it names nothing, and no path
    /// or object name is ever built from it.
    #[error("not a file key: {0:?}")]
    BadKey(String),
    /// The storage could not be reached or refused the operation.
    #[error("file storage failed: {0}")]
    Storage(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A file being read: its size, then its bytes in chunks.
pub struct FileRead {
    pub size: u64,
    pub body: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
}

/// A kept file, as the sweep of unreferenced files lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub key: String,
    /// When it was last written (a `put` of an existing key renews it).
    pub modified: SystemTime,
}

#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// A directory on local disk where uploads are staged before [`FileStore::put`]
    /// (on the same file system as the files, for the local store, so that
    /// `put` is a rename).
    fn staging_dir(&self) -> &Path;

    /// Keeps the finished file at `path` (in [`FileStore::staging_dir`])
    /// under `key`, atomically: a reader finds nothing or all of it, even
    /// after a crash. `path` is consumed (moved or removed) whatever the
    /// outcome, a refused key included, so that a failed upload leaves
    /// nothing behind for its caller to clean. When `key` is kept already its
    /// bytes are the same; its modification time is renewed, so that the
    /// sweep of unreferenced files does not take it for an old orphan while
    /// a new attachment is about to name it.
    async fn put(&self, key: &str, path: PathBuf) -> FileResult<()>;

    /// The file under `key`, streamed; `None` when there is none.
    async fn get(&self, key: &str) -> FileResult<Option<FileRead>>;

    /// Forgets the file under `key`; nothing there is not an error.
    async fn delete(&self, key: &str) -> FileResult<()>;

    /// Every kept file (for the sweep of files no attachment names).
    async fn list(&self) -> FileResult<Vec<StoredFile>>;
}

/// Checks that `key` is a file key (see [`FileError::BadKey`]).
pub fn check_key(key: &str) -> FileResult<()> {
    if key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(FileError::BadKey(key.chars().take(80).collect()))
    }
}
