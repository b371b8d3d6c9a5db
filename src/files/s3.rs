//! Files kept in S3-compatible object storage (AWS S3, MinIO, Garage, Ceph,
//! R2…), for a cluster: every node sees every file, and no node's disk
//! holds them.
//!
//! An object per file, named `PREFIX/KEY`. S3 makes an object visible only
//! once all of it is written, which is the atomicity [`FileStore::put`]
//! promises; uploads are staged on local disk first so that they can be
//! checked and hashed before anything is sent.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::{FileError, FileRead, FileResult, FileStore, StoredFile, check_key};

/// Where the files are kept and how to reach them.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// The server's base URL (`https://s3.example.net`, `http://minio:9000`);
    /// `None` for AWS itself. Plain `http://` is allowed for a server on a
    /// private network.
    pub endpoint: Option<String>,
    /// Part of every request's signature, even on servers that have a single
    /// region (MinIO's default is `us-east-1`).
    pub region: String,
    /// With `secret_access_key`; when both are `None` the credentials come
    /// from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, web identity, container or instance metadata).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// The folder of the bucket the files are in, e.g. `natter/` (a trailing
    /// `/` is implied), so that one bucket can serve several deployments;
    /// empty for the bucket's top level.
    pub prefix: String,
}

/// The size of an upload's parts. An upload smaller than this is sent in
/// one request; a larger one in parts of this size (S3 wants at least
/// 5 MiB but for the last).
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts of one upload sent at once: with the part being filled, an upload
/// holds at most three parts in memory, whatever the file's size.
const PARTS_IN_FLIGHT: usize = 2;

/// How much of a staged file is read at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Files kept in an S3 bucket (see the module docs).
#[derive(Debug)]
pub struct S3Files {
    store: Arc<dyn ObjectStore>,
    /// The objects' common prefix, without its trailing `/`; empty for none.
    prefix: ObjectPath,
    staging: PathBuf,
}

impl S3Files {
    /// Connects to the bucket (lazily: nothing is sent before the first
    /// operation) and creates the staging directory `staging` (mode 0700).
    ///
    /// `staging` is the node's own: files stay there only while they are
    /// uploaded. What a crash leaves in it is the caller's to clear (the
    /// server empties it at startup, under its data directory's lock).
    pub fn open(settings: &S3Settings, staging: &Path) -> anyhow::Result<S3Files> {
        let builder = match (&settings.access_key_id, &settings.secret_access_key) {
            // Not `from_env`: a stray `AWS_SESSION_TOKEN` would be sent
            // with keys it does not belong to.
            (Some(id), Some(secret)) => AmazonS3Builder::new()
                .with_access_key_id(id)
                .with_secret_access_key(secret),
            (None, None) => AmazonS3Builder::from_env(),
            _ => anyhow::bail!("S3: the access key id and the secret access key go together"),
        };
        let mut builder = builder
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            // Path-style requests (`ENDPOINT/BUCKET/OBJECT`): every
            // S3-compatible server understands them, whereas virtual-hosted
            // ones (`BUCKET.ENDPOINT/OBJECT`) need wildcard DNS.
            .with_virtual_hosted_style_request(false)
            // An upload or a download waits on this: a few quick retries, not
            // the crate's default of up to 3 minutes.
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(15),
                ..Default::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder
            .build()
            .with_context(|| format!("S3: cannot use bucket {:?}", settings.bucket))?;
        let prefix = ObjectPath::parse(&settings.prefix)
            .with_context(|| format!("S3: not an object prefix: {:?}", settings.prefix))?;
        DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        Ok(S3Files {
            store: Arc::new(store),
            prefix,
            staging: staging.to_path_buf(),
        })
    }

    /// The object of the file `key`. Only ever called with a checked key.
    fn object(&self, key: &str) -> ObjectPath {
        self.prefix.clone().join(key)
    }

    /// Uploads the staged file at `path` as `object`, a part at a time.
    async fn upload(&self, path: &Path, object: ObjectPath) -> FileResult<()> {
        let file = tokio::fs::File::open(path).await?;
        let mut chunks = ReaderStream::with_capacity(file, READ_CHUNK);
        let mut writer = BufWriter::with_capacity(Arc::clone(&self.store), object, PART_SIZE)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        while let Some(chunk) = chunks.next().await {
            let sent = match chunk {
                Ok(chunk) => writer.put(chunk).await.map_err(storage),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = sent {
                // Parts already sent are billed until the upload is aborted.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "S3: cannot abort a failed upload");
                }
                return Err(e);
            }
        }
        // Sends what is left, and completes the upload: only then is the
        // object visible.
        writer
            .shutdown()
            .await
            .map_err(|e| FileError::Storage(e.to_string()))
    }
}

#[async_trait]
impl FileStore for S3Files {
    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    /// Uploads the file even when `key` is kept already: that renews its
    /// `last_modified` (S3 has no "touch"), and a PUT replaces an object
    /// atomically, so readers see the old bytes or the new, the same.
    async fn put(&self, key: &str, path: PathBuf) -> FileResult<()> {
        let uploaded = match check_key(key) {
            Ok(()) => self.upload(&path, self.object(key)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = tokio::fs::remove_file(&path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a staged upload");
        }
        uploaded
    }

    async fn get(&self, key: &str) -> FileResult<Option<FileRead>> {
        check_key(key)?;
        match self.store.get(&self.object(key)).await {
            Ok(found) => Ok(Some(FileRead {
                size: found.meta.size,
                body: Box::pin(found.into_stream().map_err(std::io::Error::other)),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    async fn delete(&self, key: &str) -> FileResult<()> {
        check_key(key)?;
        match self.store.delete(&self.object(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage(e)),
        }
    }

    /// The objects directly under the prefix named by a key; anything else
    /// in the bucket is not ours and is left out.
    async fn list(&self) -> FileResult<Vec<StoredFile>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let mut objects = self.store.list(prefix);
        let mut files = Vec::new();
        while let Some(meta) = objects.try_next().await.map_err(storage)? {
            let Some(key) = meta.location.filename() else {
                continue;
            };
            if check_key(key).is_ok() && meta.location == self.object(key) {
                files.push(StoredFile {
                    key: key.to_owned(),
                    modified: SystemTime::from(meta.last_modified),
                });
            }
        }
        Ok(files)
    }
}

fn storage(e: object_store::Error) -> FileError {
    FileError::Storage(e.to_string())
}
