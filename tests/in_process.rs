//! A node built and run inside the test's own process (`app::build`, then
//! `Node::run`), as a test that needs no separate binary can do: it serves,
//! stops when its shutdown future completes, and lets go of its data directory.

use clap::Parser;
use natter::app;
use natter::config::{Cli, ServeArgs};

/// The server's flags for a node on `data_dir`, parsed as the binary parses them.
fn flags(data_dir: &std::path::Path) -> ServeArgs {
    let data_dir = data_dir.to_str().expect("a UTF-8 temporary path");
    Cli::try_parse_from(["natter", "--addr", "127.0.0.1:0", "--data-dir", data_dir])
        .expect("valid flags")
        .serve
}

#[tokio::test]
async fn a_node_built_in_process_serves_then_stops_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let node = app::build(flags(dir.path()))
        .await
        .expect("the node builds");
    let base = format!("http://{}", node.local_addr);

    // Its data directory is locked while it lives: a second node is refused.
    let second = app::build(flags(dir.path())).await;
    let refusal = format!(
        "{:#}",
        second.err().expect("a second node on the same directory")
    );
    assert!(refusal.contains("another Natter server"), "{refusal}");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(node.run(async {
        let _ = stopped.await;
    }));
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    stop.send(()).unwrap();
    running
        .await
        .expect("the node's task")
        .expect("a clean stop");
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "nothing listens after the stop"
    );
    // Stopped, it released the directory: a new node builds on it.
    app::build(flags(dir.path()))
        .await
        .expect("the directory is free again");
}
