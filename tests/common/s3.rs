//! A real S3 server for tests: s3s-fs (buckets are folders of a temporary
//! directory), served in-process on a loopback port. Not a mock: requests
//! are signed and sent over HTTP, uploads larger than a part go multipart.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

pub const BUCKET: &str = "attachments";
pub const ACCESS_KEY: &str = "natter-test";
pub const SECRET_KEY: &str = "natter-test-secret";

/// A running S3 server with one bucket, [`BUCKET`]; it lives as long as the
/// test's runtime (its accept loop is a task of it) and `dirs`.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub dirs: tempfile::TempDir,
    /// The accept loop; aborting it (with its connections) stops the server.
    serving: tokio::task::JoinHandle<()>,
}

impl S3Server {
    pub async fn start() -> S3Server {
        Self::start_in(tempfile::tempdir().unwrap(), "127.0.0.1:0").await
    }

    /// Stops answering: the listener and every open connection go.
    pub fn stop(self) -> (tempfile::TempDir, String) {
        self.serving.abort();
        (self.dirs, self.endpoint)
    }

    /// Starts again on what [`S3Server::stop`] left: the same buckets, the same address.
    pub async fn restart((dirs, endpoint): (tempfile::TempDir, String)) -> S3Server {
        let addr = endpoint.trim_start_matches("http://").to_owned();
        Self::start_in(dirs, &addr).await
    }

    async fn start_in(dirs: tempfile::TempDir, addr: &str) -> S3Server {
        let buckets = dirs.path().join("buckets");
        std::fs::create_dir_all(buckets.join(BUCKET)).unwrap();
        let mut service =
            s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(&buckets).unwrap());
        service.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = service.build();

        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(async move {
            // Connections live in this task, so that aborting it ends them too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let service = service.clone();
                connections.spawn(async move {
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        S3Server {
            endpoint: format!("http://{addr}"),
            dirs,
            serving,
        }
    }

    /// The files of the bucket (s3s-fs keeps each object as a file).
    pub fn objects(&self) -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.path().is_dir() {
                    walk(&entry.path(), out);
                } else {
                    out.push(entry.path());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dirs.path().join("buckets").join(BUCKET), &mut out);
        out
    }
}
