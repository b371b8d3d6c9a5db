//! Many sockets sending into one room at the same moment: nothing lost, nothing
//! doubled, `seq` gap-free, and every socket hears everyone else exactly once.

mod common;

use std::collections::HashSet;

use common::{Server, Socket, seqs};
use serde_json::json;

const SOCKETS_PER_USER: usize = 3;
const MESSAGES_PER_SOCKET: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_sockets_send_six_hundred_messages_at_once() {
    // The per-user rate limit would refuse most of this burst; it is not what is tested here.
    let server = Server::start_with(&["--send-rate", "100000", "--send-burst", "100000"]);
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;

    let mut sockets = Vec::new();
    for user in [&alice, &bob] {
        for _ in 0..SOCKETS_PER_USER {
            let socket = Socket::connect(&server.url, &user.token).await;
            assert_eq!(
                socket.ack("join-chat", json!({"rid": rid})).await["ok"],
                true
            );
            sockets.push(socket);
        }
    }

    // Every socket fires its 100 messages without waiting for anything.
    let sends = sockets.iter().enumerate().flat_map(|(s, socket)| {
        let rid = rid.clone();
        (0..MESSAGES_PER_SOCKET).map(move |i| {
            let payload = json!({"rid": rid, "message": format!("s{s} m{i}"), "client_id": format!("s{s}-{i}")});
            socket.emit("outgoing", payload)
        })
    });
    futures_util::future::join_all(sends).await;

    let total = sockets.len() * MESSAGES_PER_SOCKET;
    let expected_per_socket = total - MESSAGES_PER_SOCKET;
    for (s, socket) in sockets.iter().enumerate() {
        let got = socket.wait_for("message", expected_per_socket).await;
        let ids: Vec<String> = got
            .iter()
            .map(|m| m["client_id"].as_str().unwrap().to_owned())
            .collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            ids.len(),
            expected_per_socket,
            "socket {s} got {} messages",
            ids.len()
        );
        assert_eq!(unique.len(), ids.len(), "socket {s} got a message twice");
        let own = format!("s{s}-");
        assert!(
            !ids.iter().any(|id| id.starts_with(&own)),
            "socket {s} heard its own message"
        );
    }

    // Stored once each, seq 1..=600 with no gap and no repeat.
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = api
            .history(&alice, &rid, &format!("?after={after}&limit=200"))
            .await;
        let Some(last) = page.last() else { break };
        after = last["seq"].as_i64().unwrap();
        stored.extend(page);
    }
    assert_eq!(seqs(&stored), (1..=total as i64).collect::<Vec<_>>());
    let client_ids: HashSet<&str> = stored
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(client_ids.len(), total, "every message stored exactly once");
    // Sender attribution: sockets 0-2 are Alice's, 3-5 Bob's.
    for m in &stored {
        let socket: usize = m["client_id"].as_str().unwrap()[1..2].parse().unwrap();
        let expected = if socket < SOCKETS_PER_USER {
            &alice.id
        } else {
            &bob.id
        };
        assert_eq!(m["sender_id"].as_str().unwrap(), expected);
    }
}
