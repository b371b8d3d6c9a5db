//! Throwaway PostgreSQL and Redis servers, each on its own port and data
//! directory, that a test may stop and start again without disturbing the
//! machine's own (which every other test shares).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;

/// A `redis-server` of the test's own, keeping nothing on disk.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let mut redis = OwnRedis {
            port: free_port(),
            child: None,
        };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: no goodbye to its clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, and waits until it answers.
    pub fn resume(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        wait_until("redis answers", || {
            Command::new("redis-cli")
                .args(["-p", &port, "ping"])
                .output()
                .is_ok_and(|out| out.stdout.starts_with(b"PONG"))
        });
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster of the test's own (`initdb` in a temp dir, run as the
/// `postgres` user when the test runs as root, which PostgreSQL refuses).
pub struct OwnPostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl OwnPostgres {
    pub fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server is installed in /usr/lib/postgresql")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .find(|bin| bin.join("initdb").exists())
            .expect("initdb in /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().expect("temp dir");
        if as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the cluster's directory");
        }
        let postgres = OwnPostgres {
            port: free_port(),
            dir,
            bin,
        };
        let data = postgres.data().display().to_string();
        postgres.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        postgres.resume();
        postgres
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of database `test` (created at start).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    /// Runs one of PostgreSQL's programs, as `postgres` if we are root.
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command
            .args(args)
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (fsync off: these tests are about outages, not
    /// power loss) and waits until database `test` exists.
    pub fn resume(&self) {
        let (data, socket_dir) = (self.data(), self.dir.path());
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            socket_dir.display()
        );
        let log = socket_dir.join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
        let port = self.port.to_string();
        let exists = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-At"])
            .args(["-c", "SELECT 1 FROM pg_database WHERE datname = 'test'"])
            .output()
            .expect("psql is installed");
        if !exists.stdout.starts_with(b"1") {
            let status = Command::new("createdb")
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "test"])
                .status()
                .unwrap();
            assert!(status.success(), "createdb test");
        }
    }

    /// Stops the server at once (`-m immediate`: every connection is cut, as
    /// a crash or a failover would).
    pub fn stop(&self) {
        let data = self.data().display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data();
        if Path::new(&data.join("postmaster.pid")).exists() {
            self.stop();
        }
    }
}

/// Whether the tests run as root (CI does), asked once of `id -u`.
fn as_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
    })
}

/// Polls `ready` every 50 ms for at most 10 s.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within 10 s");
}
