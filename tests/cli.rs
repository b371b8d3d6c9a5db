//! The binary as an operator meets it: first start, restart, and clear
//! one-line failures for bad configuration.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{PASSWORD, Server};
use serde_json::json;

fn natter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_natter"))
}

#[tokio::test]
async fn a_restart_keeps_users_messages_and_the_secret() {
    let server = Server::start();
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    api.call(
        "POST",
        &format!("/rooms/{rid}/messages"),
        Some(json!({"message": "kept"})),
        Some(&alice.token),
    )
    .await;
    let dir = server.stop();
    // On PostgreSQL (NATTER_TEST_STORE) the data and the secret are in the database.
    let on_sqlite = !dir.path().join("postgres-url").exists();
    let secret = std::fs::read(dir.path().join("cookie-secret")).ok();
    if on_sqlite {
        for file in ["cookie-secret", "natter.db", "natter.db-search"] {
            let meta = std::fs::metadata(dir.path().join(file)).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o600,
                "{file} is private"
            );
        }
    }

    let server = Server::start_in(dir, &[]);
    let api = server.api();
    let r = api.call("GET", "/me", None, Some(&alice.token)).await;
    assert_eq!(r.status, 200, "sessions survive a restart");
    let r = api
        .call(
            "POST",
            "/sessions",
            Some(json!({"email": bob.email, "password": PASSWORD})),
            None,
        )
        .await;
    assert_eq!(r.status, 201);
    let history = api.history(&alice, &rid, "").await;
    assert_eq!(history[0]["message"], "kept");
    assert_eq!(
        std::fs::read(server.data_dir.path().join("cookie-secret")).ok(),
        secret
    );
}

/// Runs natter expecting a quick failure; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = natter().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_configuration_fails_with_one_clear_line() {
    let err = fails(&["--no-such-flag"]);
    assert!(
        err.contains("unexpected argument '--no-such-flag'"),
        "{err}"
    );
    let err = fails(&["serve", "--addr", "not-an-address"]);
    assert!(err.contains("invalid value 'not-an-address'"), "{err}");
    let err = fails(&["--send-rate", "0"]);
    assert!(err.contains("--send-rate"), "{err}");
    for (flag, value) in [("--webhook-queue", "0"), ("--webhook-timeout-secs", "0")] {
        let err = fails(&[flag, value]);
        assert!(err.contains(flag), "{err}");
    }

    let err = fails(&["--addr", "127.0.0.1:0", "--data-dir", "/proc/natter"]);
    assert!(
        err.contains("natter: error: cannot create data directory /proc/natter"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = natter()
        .args(["--addr", &addr, "--data-dir"])
        .arg(dir.path())
        .env("NATTER_LOG", "off")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let server = Server::start();
    let out = natter()
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another Natter server is using the data directory"),
        "{stderr}"
    );
    // The first one is untouched, and once it is gone the directory is free.
    assert_eq!(
        server.api().call("GET", "/me", None, None).await.status,
        401
    );
    let dir = server.stop();
    let again = Server::start_in(dir, &[]);
    assert_eq!(again.api().call("GET", "/me", None, None).await.status, 401);
}

#[test]
fn help_explains_every_setting() {
    let out = natter().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--addr",
        "--data-dir",
        "--database-url",
        "--send-rate",
        "--max-message-chars",
        "NATTER_ADDR",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_only() {
    let server = Server::start();
    server.api().register("alice").await;
    let dir = server.stop();
    let hash: String = match std::fs::read_to_string(dir.path().join("postgres-url")) {
        Ok(url) => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query_scalar("SELECT password_hash FROM users")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
        Err(_) => {
            let url = format!("sqlite://{}", dir.path().join("natter.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query_scalar("SELECT password_hash FROM users")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(common::PASSWORD));
}

/// SIGTERM with a socket open: the server finishes what it took, tells the
/// sockets it is going (`shutting-down`), refuses sends from then on with
/// `unavailable`, closes the sockets and the database, and exits 0 (without
/// the signal handler the process would die of the signal).
#[tokio::test]
async fn sigterm_drains_notifies_and_exits_cleanly() {
    let server = Server::start();
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    let socket = common::Socket::connect(&server.url, &alice.token).await;
    let ack = socket
        .ack("outgoing", json!({"rid": rid, "message": "before"}))
        .await;
    assert_eq!(ack["ok"], true);
    let url = server.url.clone();
    let stopping = tokio::task::spawn_blocking(move || server.terminate());

    let notice = socket.wait_for("shutting-down", 1).await;
    assert_eq!(notice[0], json!({"reconnect": true}));
    let late = socket
        .ack("outgoing", json!({"rid": rid, "message": "too late"}))
        .await;
    assert_eq!(late["error"]["code"], "unavailable", "{late}");

    let (status, data_dir) = stopping.await.unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "no longer listening"
    );
    if std::env::var("NATTER_TEST_STORE").is_err() {
        // A clean close checkpoints SQLite's write-ahead log and removes it.
        let wal = data_dir.path().join("natter.db-wal");
        assert!(!wal.exists(), "the WAL was left behind: not closed cleanly");
    }
    drop(socket);
}
