//! PROTOCOL.md §3, Socket.IO: authentication, every event with its acks and
//! error codes, who receives what, and that refused sends store nothing.

mod common;

use common::{Server, Socket, TestUser, connect_error, seqs, settle};
use rust_socketio::TransportType;
use serde_json::{Value, json};

/// Two members and an outsider, with the members' room.
async fn room(server: &Server) -> (TestUser, TestUser, TestUser, String) {
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let carol = api.register("carol").await;
    let rid = api.open_chat(&alice, &bob).await;
    (alice, bob, carol, rid)
}

fn error_ack(code: &str) -> Value {
    json!({ "error": { "code": code } })
}

#[tokio::test]
async fn connecting_needs_a_valid_token() {
    let server = Server::start();
    let alice = server.api().register("alice").await;
    assert!(
        connect_error(&server.url, json!({}))
            .await
            .contains("unauthorized")
    );
    assert!(
        connect_error(&server.url, json!({"token": "bogus"}))
            .await
            .contains("unauthorized")
    );
    assert!(
        connect_error(&server.url, json!({"token": 12}))
            .await
            .contains("unauthorized")
    );
    let socket = Socket::connect(&server.url, &alice.token).await;
    socket.close().await;
    // Long-polling is a transport like any other.
    let polling = Socket::connect_with(
        &server.url,
        json!({"token": alice.token}),
        TransportType::Polling,
    )
    .await;
    let ack = polling.ack("join-chat", json!({"rid": "nope"})).await;
    assert_eq!(ack, error_ack("no_such_room"));
    polling.close().await;
}

#[tokio::test]
async fn join_chat_checks_membership_and_announces() {
    let server = Server::start();
    let (alice, bob, carol, rid) = room(&server).await;
    let a = Socket::connect(&server.url, &alice.token).await;
    let b = Socket::connect(&server.url, &bob.token).await;
    let c = Socket::connect(&server.url, &carol.token).await;

    assert_eq!(
        a.ack("join-chat", json!({"rid": rid})).await,
        json!({"ok": true, "rid": rid, "last_seq": 0})
    );
    assert_eq!(b.ack("join-chat", json!({"rid": rid})).await["ok"], true);
    assert_eq!(
        c.ack("join-chat", json!({"rid": rid})).await,
        error_ack("not_member")
    );
    assert_eq!(
        c.ack("join-chat", json!({"rid": "999999999"})).await,
        error_ack("no_such_room")
    );
    assert_eq!(c.ack("join-chat", json!({})).await, error_ack("invalid"));
    assert_eq!(
        c.ack("join-chat", json!("just a string")).await,
        error_ack("invalid")
    );

    let joined = a.wait_for("joined-chat", 2).await;
    assert_eq!(
        joined[1],
        json!({"rid": rid, "user_id": bob.id, "username": "bob", "msg": "bob is now online."})
    );
    settle().await;
    assert!(
        c.received("joined-chat").is_empty(),
        "a refused join neither joins the room nor is announced"
    );
    // The outsider is not in the room: it hears none of its messages.
    a.ack("outgoing", json!({"rid": rid, "message": "private"}))
        .await;
    settle().await;
    assert!(c.received("message").is_empty());
}

#[tokio::test]
async fn outgoing_is_stored_acked_and_broadcast_to_the_others() {
    let server = Server::start();
    let (alice, bob, _, rid) = room(&server).await;
    let a1 = Socket::connect(&server.url, &alice.token).await;
    let a2 = Socket::connect(&server.url, &alice.token).await;
    let b1 = Socket::connect(&server.url, &bob.token).await;
    for s in [&a1, &a2, &b1] {
        assert_eq!(s.ack("join-chat", json!({"rid": rid})).await["ok"], true);
    }

    let ack = a1
        .ack(
            "outgoing",
            json!({"rid": rid, "message": " hello bob ", "client_id": "c-1",
                   "sender_id": bob.id, "sender_username": "mallory", "timestamp": 1}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let m1 = ack["message"].clone();
    assert_eq!(m1["seq"], 1);
    assert_eq!(m1["rid"], rid.as_str());
    assert_eq!(m1["sender_id"], alice.id.as_str());
    assert_eq!(m1["sender_username"], "alice");
    assert_eq!(m1["message"], "hello bob");
    assert_eq!(m1["client_id"], "c-1");
    assert!(m1["timestamp"].as_f64().unwrap() > 1.0e9);

    // A resend returns the stored message and is not broadcast again.
    let again = a1
        .ack(
            "outgoing",
            json!({"rid": rid, "message": "hello bob", "client_id": "c-1"}),
        )
        .await;
    assert_eq!(again["message"], m1);

    let ack = b1
        .ack("outgoing", json!({"rid": rid, "message": "hi alice"}))
        .await;
    assert_eq!(ack["message"]["seq"], 2);
    // No ack callback: still stored and broadcast.
    a1.emit("outgoing", json!({"rid": rid, "message": "no ack wanted"}))
        .await;

    assert_eq!(seqs(&b1.wait_for("message", 2).await), [1, 3]);
    assert_eq!(seqs(&a2.wait_for("message", 3).await), [1, 2, 3]);
    assert_eq!(seqs(&a1.wait_for("message", 1).await), [2]);
    settle().await;
    assert_eq!(
        seqs(&a1.received("message")),
        [2],
        "the sending socket never hears its own"
    );
    assert_eq!(
        b1.received("message")[0],
        m1,
        "broadcast carries the stored message"
    );
    assert_eq!(seqs(&b1.received("message")), [1, 3]);
}

#[tokio::test]
async fn refused_sends_store_nothing() {
    let server = Server::start();
    let (alice, bob, carol, rid) = room(&server).await;
    let a = Socket::connect(&server.url, &alice.token).await;
    let b = Socket::connect(&server.url, &bob.token).await;
    let c = Socket::connect(&server.url, &carol.token).await;
    b.ack("join-chat", json!({"rid": rid})).await;

    let cases = [
        (&a, json!({"rid": rid, "message": "   "}), "empty"),
        (
            &a,
            json!({"rid": rid, "message": "x".repeat(4001)}),
            "too_long",
        ),
        (&a, json!({"rid": rid, "message": 42}), "invalid"),
        (&a, json!({"rid": rid}), "invalid"),
        (&a, json!({"message": "where?"}), "invalid"),
        (
            &a,
            json!({"rid": rid, "message": "hi", "client_id": ["x"]}),
            "invalid",
        ),
        (&a, json!({"rid": "nope", "message": "hi"}), "no_such_room"),
        (
            &c,
            json!({"rid": rid, "message": "let me in"}),
            "not_member",
        ),
    ];
    for (socket, payload, code) in cases {
        assert_eq!(
            socket.ack("outgoing", payload.clone()).await,
            error_ack(code),
            "{payload}"
        );
    }
    // Not even a join is needed to be refused: membership is checked per send.
    let ok = a
        .ack("outgoing", json!({"rid": rid, "message": "x".repeat(4000)}))
        .await;
    assert_eq!(ok["message"]["seq"], 1, "nothing was stored before it");
    settle().await;
    assert_eq!(
        seqs(&b.received("message")),
        [1],
        "refusals were not broadcast"
    );
    assert_eq!(seqs(&server.api().history(&bob, &rid, "").await), [1]);
}

#[tokio::test]
async fn sends_over_the_rate_are_refused() {
    let server = Server::start_with(&["--send-rate", "1", "--send-burst", "2"]);
    let (alice, _, _, rid) = room(&server).await;
    let a = Socket::connect(&server.url, &alice.token).await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let ack = a
            .ack("outgoing", json!({"rid": rid, "message": format!("m{i}")}))
            .await;
        codes.push(
            ack["ok"]
                .as_bool()
                .map_or_else(|| ack["error"]["code"].to_string(), |_| "ok".into()),
        );
    }
    assert_eq!(codes, ["ok", "ok", "\"rate_limited\""]);
    assert_eq!(seqs(&server.api().history(&alice, &rid, "").await), [1, 2]);
}

#[tokio::test]
async fn sync_returns_exactly_what_was_missed() {
    let server = Server::start();
    let (alice, bob, carol, rid) = room(&server).await;
    let a = Socket::connect(&server.url, &alice.token).await;
    for i in 1..=5 {
        a.ack("outgoing", json!({"rid": rid, "message": format!("m{i}")}))
            .await;
    }
    let b = Socket::connect(&server.url, &bob.token).await;
    let ack = b.ack("sync", json!({"rid": rid, "after_seq": 2})).await;
    assert_eq!(ack["ok"], true);
    let messages = ack["messages"].as_array().unwrap();
    assert_eq!(seqs(messages), [3, 4, 5]);
    assert_eq!(messages[0]["message"], "m3");
    let ack = b
        .ack("sync", json!({"rid": rid, "after_seq": 0, "limit": 2}))
        .await;
    assert_eq!(seqs(ack["messages"].as_array().unwrap()), [1, 2]);
    let ack = b.ack("sync", json!({"rid": rid, "after_seq": 5})).await;
    assert_eq!(ack, json!({"ok": true, "messages": []}));
    let c = Socket::connect(&server.url, &carol.token).await;
    assert_eq!(
        c.ack("sync", json!({"rid": rid, "after_seq": 0})).await,
        error_ack("not_member")
    );
    assert_eq!(
        b.ack("sync", json!({"rid": "nope", "after_seq": 0})).await,
        error_ack("no_such_room")
    );
    assert_eq!(
        b.ack("sync", json!({"rid": rid, "after_seq": -1})).await,
        error_ack("invalid")
    );
    assert_eq!(
        b.ack("sync", json!({"rid": rid, "after_seq": 0, "limit": 0}))
            .await,
        error_ack("invalid")
    );
    assert_eq!(
        b.ack("sync", json!({"after_seq": 0})).await,
        error_ack("invalid")
    );
}

#[tokio::test]
async fn messages_posted_over_the_api_reach_sockets() {
    let server = Server::start();
    let (alice, bob, _, rid) = room(&server).await;
    let a = Socket::connect(&server.url, &alice.token).await;
    let b = Socket::connect(&server.url, &bob.token).await;
    a.ack("join-chat", json!({"rid": rid})).await;
    b.ack("join-chat", json!({"rid": rid})).await;
    let r = server
        .api()
        .call(
            "POST",
            &format!("/rooms/{rid}/messages"),
            Some(json!({"message": "from a bot"})),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(b.wait_for("message", 1).await[0], r.body);
    // The API caller has no socket to exclude: the author's sockets get it too.
    assert_eq!(a.wait_for("message", 1).await[0], r.body);
}

#[tokio::test]
async fn logging_out_disconnects_that_sessions_sockets() {
    let server = Server::start();
    let (alice, bob, _, rid) = room(&server).await;
    let a = Socket::connect(&server.url, &alice.token).await;
    let b = Socket::connect(&server.url, &bob.token).await;
    a.ack("join-chat", json!({"rid": rid})).await;
    let r = server
        .api()
        .call("DELETE", "/sessions/current", None, Some(&alice.token))
        .await;
    assert_eq!(r.status, 204);
    settle().await;
    b.ack("outgoing", json!({"rid": rid, "message": "still there?"}))
        .await;
    settle().await;
    assert!(
        a.received("message").is_empty(),
        "a revoked session's socket hears nothing more"
    );
    assert!(
        connect_error(&server.url, json!({"token": alice.token}))
            .await
            .contains("unauthorized")
    );
}

#[tokio::test]
async fn oversized_frames_close_the_connection() {
    let server = Server::start();
    let (alice, bob, _, rid) = room(&server).await;
    let a = Socket::connect(&server.url, &alice.token).await;
    let b = Socket::connect(&server.url, &bob.token).await;
    b.ack("join-chat", json!({"rid": rid})).await;
    a.emit(
        "outgoing",
        json!({"rid": rid, "message": "x".repeat(70_000)}),
    )
    .await;
    settle().await;
    let after = a
        .try_emit(
            "outgoing",
            json!({"rid": rid, "message": "after the big one"}),
        )
        .await;
    assert!(after.is_err(), "the server closed the connection");
    settle().await;
    assert!(
        b.received("message").is_empty(),
        "the connection was closed, nothing got through"
    );
    assert!(server.api().history(&bob, &rid, "").await.is_empty());
}

#[tokio::test]
async fn sockets_hear_all_their_rooms_including_new_ones() {
    let server = Server::start();
    let api = server.api();
    let (alice, bob, carol, rid) = room(&server).await;
    // Connected before the second room exists, and never joins either room.
    let a = Socket::connect(&server.url, &alice.token).await;
    let c = Socket::connect(&server.url, &carol.token).await;
    api.call(
        "POST",
        &format!("/rooms/{rid}/messages"),
        Some(json!({"message": "in the old room"})),
        Some(&bob.token),
    )
    .await;
    let with_carol = api.open_chat(&carol, &alice).await;
    let r = api
        .call(
            "POST",
            &format!("/rooms/{with_carol}/messages"),
            Some(json!({"message": "in the new room"})),
            Some(&carol.token),
        )
        .await;
    assert_eq!(r.status, 201);
    let got = a.wait_for("message", 2).await;
    let texts: Vec<&str> = got.iter().map(|m| m["message"].as_str().unwrap()).collect();
    assert_eq!(texts, ["in the old room", "in the new room"]);
    settle().await;
    assert_eq!(
        c.received("message").len(),
        1,
        "carol hears her room only, not alice and bob's"
    );
}
