//! The [`FileStore`] contract, run against both stores: the local directory
//! (in a temporary directory) and S3 (against s3s-fs, a real S3 server
//! started in-process on a loopback port, not a mock: requests are signed,
//! sent over HTTP and uploads larger than a part go multipart).
//!
//! Each case is one `async fn(Fixture)`; [`both!`] makes a `local::CASE` and
//! an `s3::CASE` test of it, so a failure names its backend.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::TryStreamExt;
use natter::files::local::LocalFiles;
use natter::files::s3::{S3Files, S3Settings};
use natter::files::{FileError, FileStore};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

/// A store under test, and what it needs alive: its directories and, for
/// S3, the server (a task of the test's runtime, which ends with the test).
struct Fixture {
    store: Arc<dyn FileStore>,
    dirs: TempDir,
}

fn local() -> Fixture {
    let dirs = tempfile::tempdir().unwrap();
    let store = LocalFiles::open(&dirs.path().join("files")).unwrap();
    Fixture {
        store: Arc::new(store),
        dirs,
    }
}

/// Starts an S3 server whose buckets are the folders of a temporary
/// directory, and opens an [`S3Files`] on a bucket of it.
async fn s3() -> Fixture {
    let server = S3Server::start().await;
    let settings = S3Settings {
        bucket: BUCKET.into(),
        endpoint: Some(server.endpoint.clone()),
        region: "us-east-1".into(),
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
        prefix: "natter/".into(),
    };
    let store = S3Files::open(&settings, &server.dirs.path().join("staging")).unwrap();
    Fixture {
        store: Arc::new(store),
        dirs: server.dirs,
    }
}

/// `both!(case, …)`: a `local::case` and an `s3::case` test for each case.
macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::local()).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::s3().await).await;
                }
            )*
        }
    };
}

both!(
    round_trip_of_a_large_file,
    putting_a_key_twice_keeps_one_file_and_renews_it,
    absent_keys_read_as_none,
    delete_forgets_and_tolerates_absence,
    list_is_exactly_what_was_put,
    bad_keys_are_refused_and_nothing_is_written,
);

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

/// Writes `bytes` to a new file in the store's staging directory, as an
/// upload does, and returns its key and path.
fn stage(store: &dyn FileStore, bytes: &[u8]) -> (String, PathBuf) {
    let path = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(store.staging_dir())
        .unwrap()
        .into_temp_path()
        .keep()
        .unwrap();
    std::fs::write(&path, bytes).unwrap();
    (hex_sha256(bytes), path)
}

async fn put_bytes(store: &dyn FileStore, bytes: &[u8]) -> String {
    let (key, path) = stage(store, bytes);
    store.put(&key, path.clone()).await.unwrap();
    assert!(!path.exists(), "put leaves the staged file behind");
    key
}

/// The whole file under `key`, checking that its size is announced right.
async fn read(store: &dyn FileStore, key: &str) -> Option<Vec<u8>> {
    let file = store.get(key).await.unwrap()?;
    let bytes: Vec<u8> = file
        .body
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .unwrap();
    assert_eq!(file.size, bytes.len() as u64, "announced size");
    Some(bytes)
}

async fn sorted_keys(store: &dyn FileStore) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.key)
        .collect();
    keys.sort();
    keys
}

/// Larger than one S3 part (8 MiB): the S3 store uploads it in parts.
async fn round_trip_of_a_large_file(f: Fixture) {
    let store = &*f.store;
    let bytes = random_bytes(12_000_000);
    let key = put_bytes(store, &bytes).await;
    let read = read(store, &key).await.expect("the file just put");
    assert_eq!(read.len(), bytes.len());
    assert_eq!(hex_sha256(&read), key);
}

async fn putting_a_key_twice_keeps_one_file_and_renews_it(f: Fixture) {
    let store = &*f.store;
    let bytes = random_bytes(100_000);
    let key = put_bytes(store, &bytes).await;
    let first = store.list().await.unwrap();
    assert_eq!(first.len(), 1);

    // Object stores date objects to the second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(put_bytes(store, &bytes).await, key);

    let second = store.list().await.unwrap();
    assert_eq!(second.len(), 1, "one file per key: {second:?}");
    assert_eq!(second[0].key, key);
    assert!(
        second[0].modified > first[0].modified,
        "a second put renews the modification time: {first:?} then {second:?}"
    );
    assert_eq!(read(store, &key).await.as_deref(), Some(&bytes[..]));
}

async fn absent_keys_read_as_none(f: Fixture) {
    let store = &*f.store;
    assert!(
        store
            .get(&hex_sha256(b"never put"))
            .await
            .unwrap()
            .is_none()
    );
    // A key next to a kept one is absent too.
    put_bytes(store, b"kept").await;
    assert!(store.get(&hex_sha256(b"not kept")).await.unwrap().is_none());
}

async fn delete_forgets_and_tolerates_absence(f: Fixture) {
    let store = &*f.store;
    let kept = put_bytes(store, b"kept").await;
    let deleted = put_bytes(store, b"deleted").await;
    store.delete(&deleted).await.unwrap();
    assert!(store.get(&deleted).await.unwrap().is_none());
    assert_eq!(sorted_keys(store).await, [kept.as_str()]);

    store.delete(&deleted).await.unwrap();
    store.delete(&hex_sha256(b"never put")).await.unwrap();
    assert_eq!(read(store, &kept).await.as_deref(), Some(&b"kept"[..]));
}

async fn list_is_exactly_what_was_put(f: Fixture) {
    let store = &*f.store;
    assert!(store.list().await.unwrap().is_empty());
    let before = SystemTime::now() - Duration::from_secs(2);
    let mut keys = Vec::new();
    for i in 0..5 {
        keys.push(put_bytes(store, format!("file {i}").as_bytes()).await);
    }
    keys.sort();
    assert_eq!(sorted_keys(store).await, keys);
    for file in store.list().await.unwrap() {
        assert!(file.modified > before, "{file:?} is dated from its put");
    }
}

const BAD_KEYS: [&str; 5] = [
    "../etc/passwd",
    // Uppercase hex: a key has one spelling.
    "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    // 63 digits.
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
    // 64 characters, with a `/`.
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b/55",
    "",
];

async fn bad_keys_are_refused_and_nothing_is_written(f: Fixture) {
    let store = &*f.store;
    for bad in BAD_KEYS {
        let (_, staged) = stage(store, b"hostile");
        let refused = store.put(bad, staged.clone()).await;
        assert!(
            matches!(refused, Err(FileError::BadKey(_))),
            "put {bad:?}: {refused:?}"
        );
        assert!(
            !staged.exists(),
            "put {bad:?} consumes the staged file all the same"
        );
        let refused = store.get(bad).await;
        assert!(matches!(refused, Err(FileError::BadKey(_))), "get {bad:?}");
        let refused = store.delete(bad).await;
        assert!(
            matches!(refused, Err(FileError::BadKey(_))),
            "delete {bad:?}: {refused:?}"
        );
    }
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(entries(store.staging_dir()), Vec::<PathBuf>::new());
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    entries
}

/// What only the local store has: its directory, where a crash leaves
/// staged files behind.
mod local_only {
    use super::*;

    /// A crash mid-upload leaves a partial file in staging, even named like
    /// a key: it is not a kept file.
    #[tokio::test]
    async fn a_staged_file_is_neither_listed_nor_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFiles::open(dir.path()).unwrap();
        let key = hex_sha256(b"the whole upload");
        std::fs::write(store.staging_dir().join(&key), b"the whole").unwrap();
        let (_, unnamed) = stage(&store, b"half an upload");

        assert!(store.list().await.unwrap().is_empty());
        assert!(store.get(&key).await.unwrap().is_none());
        assert_eq!(
            entries(store.staging_dir()).len(),
            2,
            "staging is not the store's to clean while open"
        );
        assert!(unnamed.exists());
    }

    #[tokio::test]
    async fn open_removes_old_staged_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFiles::open(dir.path()).unwrap();
        let key = put_bytes(&store, b"kept").await;
        let (_, old) = stage(&store, b"left by a crash");
        let (_, fresh) = stage(&store, b"an upload in flight");
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(2 * 60 * 60))
            .unwrap();
        drop(store);

        let store = LocalFiles::open(dir.path()).unwrap();
        assert_eq!(entries(store.staging_dir()), [fresh]);
        assert_eq!(sorted_keys(&store).await, [key.as_str()]);
        assert_eq!(read(&store, &key).await.as_deref(), Some(&b"kept"[..]));
    }

    /// The layout is `ab/cd/KEY`, and nothing else in the directory is taken
    /// for a kept file.
    #[tokio::test]
    async fn files_are_kept_by_key_prefix_and_strays_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFiles::open(dir.path()).unwrap();
        let key = put_bytes(&store, b"kept").await;
        let kept = dir.path().join(&key[..2]).join(&key[2..4]).join(&key);
        assert_eq!(std::fs::read(&kept).unwrap(), b"kept");

        // A key in the wrong folder, a stray file, a non-hex folder.
        let other = hex_sha256(b"misplaced");
        std::fs::write(
            dir.path().join(&key[..2]).join(&key[2..4]).join(&other),
            b"x",
        )
        .unwrap();
        std::fs::write(dir.path().join(&other), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("zz").join("zz")).unwrap();
        std::fs::write(dir.path().join("zz").join("zz").join(&other), b"x").unwrap();

        assert_eq!(sorted_keys(&store).await, [key]);
        assert!(store.get(&other).await.unwrap().is_none());
    }
}

/// What only the S3 store has: object names, and a bucket shared with others.
mod s3_only {
    use super::*;

    /// Objects are `PREFIX/KEY`; what else is in the bucket (outside the
    /// prefix, deeper, not a key) is not taken for a kept file.
    #[tokio::test]
    async fn objects_are_named_prefix_and_key_and_others_are_ignored() {
        let f = s3().await;
        let key = put_bytes(&*f.store, b"kept").await;
        // s3s-fs keeps an object in the file named like it in its bucket's folder.
        let bucket = f.dirs.path().join("buckets").join(BUCKET);
        assert_eq!(
            std::fs::read(bucket.join("natter").join(&key)).unwrap(),
            b"kept"
        );

        let other = hex_sha256(b"not ours");
        std::fs::write(bucket.join(&other), b"x").unwrap();
        std::fs::create_dir_all(bucket.join("natter").join("deeper")).unwrap();
        std::fs::write(bucket.join("natter").join("deeper").join(&other), b"x").unwrap();
        std::fs::write(bucket.join("natter").join("README"), b"x").unwrap();

        assert_eq!(sorted_keys(&*f.store).await, [key]);
        assert!(f.store.get(&other).await.unwrap().is_none());
    }
}
