//! Clients we do not control, against the real server: the official
//! socket.io JavaScript client, python-socketio, two people in headless
//! Chromium using the web UI (its rich messages, webhooks' and bots'), and the web app
//! offline (a script that kills and restarts its own server). The scripts
//! live in tests/e2e and tests/python; `scripts/test` installs what they
//! need (see README).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a test script against a fresh server; fails with its output unless it passed.
fn run_script(program: &Path, script: &str, extra_env: &[(&str, PathBuf)]) {
    let server = Server::start();
    run(program, script, &server.url, extra_env);
}

/// Runs a test script with `NATTER_URL` set to `url`.
fn run(program: &Path, script: &str, url: &str, extra_env: &[(&str, PathBuf)]) {
    let ready = program.exists() || program.components().count() == 1;
    assert!(
        ready,
        "{} is missing: run scripts/test (it installs the test clients)",
        program.display()
    );
    let mut command = Command::new(program);
    command.arg(repo().join(script)).env("NATTER_URL", url);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains(" passed, 0 failed"),
        "{script} failed:\n{stdout}\n{stderr}"
    );
}

fn node_modules_ready() {
    assert!(
        repo().join("tests/e2e/node_modules").is_dir(),
        "tests/e2e/node_modules is missing: run scripts/test (it runs npm ci there)"
    );
}

#[test]
fn official_javascript_client() {
    node_modules_ready();
    run_script(Path::new("node"), "tests/e2e/official-client.mjs", &[]);
}

#[test]
fn python_socketio_client() {
    run_script(
        &repo().join("tests/python/.venv/bin/python"),
        "tests/python/client_test.py",
        &[],
    );
}

#[test]
fn two_people_chat_in_the_browser() {
    node_modules_ready();
    run_script(Path::new("node"), "tests/e2e/browser.mjs", &[]);
}

#[test]
fn attachments_in_the_browser_with_the_screenshots() {
    node_modules_ready();
    run_script(
        Path::new("node"),
        "tests/e2e/files.mjs",
        &[
            ("SCREENSHOT", repo().join("docs/screenshot.png")),
            ("SCREENSHOT_PHONE", repo().join("docs/screenshot-phone.png")),
        ],
    );
}

#[test]
fn the_web_app_offline_with_notifications_and_on_a_phone() {
    node_modules_ready();
    // The script starts the server itself (it kills and restarts it), on this port.
    let url = format!("http://127.0.0.1:{}", common::free_port());
    run(
        Path::new("node"),
        "tests/e2e/offline.mjs",
        &url,
        &[("NATTER_BIN", PathBuf::from(env!("CARGO_BIN_EXE_natter")))],
    );
}

#[test]
fn an_invite_only_server_in_the_browser_and_the_account_page() {
    node_modules_ready();
    let server = Server::start_with(&["--registration", "invite"]);
    run(Path::new("node"), "tests/e2e/invites.mjs", &server.url, &[]);
}

#[test]
fn accounts_blocks_and_administration_in_the_browser_with_the_screenshots() {
    node_modules_ready();
    run_script(
        Path::new("node"),
        "tests/e2e/accounts.mjs",
        &[
            (
                "SCREENSHOT_ACCOUNT",
                repo().join("docs/screenshot-account.png"),
            ),
            ("SCREENSHOT_ADMIN", repo().join("docs/screenshot-admin.png")),
        ],
    );
}

#[test]
fn webhook_and_bot_messages_in_the_browser() {
    node_modules_ready();
    run_script(Path::new("node"), "tests/e2e/webhooks.mjs", &[]);
}

#[test]
fn rich_messages_in_the_browser() {
    node_modules_ready();
    run_script(Path::new("node"), "tests/e2e/rich.mjs", &[]);
}
