//! Three Natter nodes on one PostgreSQL and one Redis, behind nginx
//! (deploy/nginx.conf): users on different nodes chat as if on one; concurrent
//! sends through different nodes share one gap-free `seq`; an account disabled
//! by the CLI loses its sockets on every node. (A node killed mid-stream, and
//! the other faults, are in tests/faults.rs.)

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::cluster::{Cluster, cluster};
use common::{Socket, TestUser, from_room, race_join_against_removal, seqs, settle};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_behind_nginx_act_as_one() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let api = cluster.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let carol = api.register("carol").await;
    let rid = api.open_chat(&alice, &bob).await;

    // A token minted through nginx works on every node: sessions live in the database.
    for i in 0..3 {
        let r = cluster
            .node(i)
            .api()
            .call("GET", "/me", None, Some(&alice.token))
            .await;
        assert_eq!(r.status, 200, "node {i}");
    }

    // The cookie secret is shared through the database: a flash cookie signed
    // by one node is read by another.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = [
        ("username", "frank"),
        ("email", "frank@example.test"),
        ("password", common::PASSWORD),
    ];
    let r = browser
        .post(format!("{}/register", cluster.node(0).url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let flash = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = browser
        .get(format!("{}/login", cluster.node(1).url))
        .header("cookie", flash)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"data-testid="flash""#),
        "node 1 verifies node 0's signature"
    );

    // Users on different nodes, both ways, and the API on a third node.
    let a = Socket::connect(&cluster.node(0).url, &alice.token).await;
    let b = Socket::connect(&cluster.node(1).url, &bob.token).await;
    assert_eq!(a.ack("join-chat", json!({"rid": rid})).await["ok"], true);
    assert_eq!(b.ack("join-chat", json!({"rid": rid})).await["ok"], true);
    assert!(
        a.wait_for("joined-chat", 2)
            .await
            .iter()
            .any(|j| j["username"] == "bob"),
        "joined-chat crosses nodes"
    );
    a.ack("outgoing", json!({"rid": rid, "message": "from node 0"}))
        .await;
    b.ack("outgoing", json!({"rid": rid, "message": "from node 1"}))
        .await;
    let r = cluster
        .node(2)
        .api()
        .call(
            "POST",
            &format!("/rooms/{rid}/messages"),
            Some(json!({"message": "from node 2"})),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(seqs(&b.wait_for("message", 2).await), [1, 3]);
    assert_eq!(seqs(&a.wait_for("message", 2).await), [2, 3]);

    // A new room reaches sockets on other nodes; logout disconnects sockets everywhere.
    let with_carol = api.open_chat(&carol, &alice).await;
    cluster
        .node(2)
        .api()
        .call(
            "POST",
            &format!("/rooms/{with_carol}/messages"),
            Some(json!({"message": "hi"})),
            Some(&carol.token),
        )
        .await;
    assert!(
        a.wait_for("message", 3)
            .await
            .iter()
            .any(|m| m["rid"] == with_carol.as_str())
    );

    concurrent_sends_through_every_node(&cluster, &alice, &bob).await;
    a.close().await;
    b.close().await;
}

/// 3 nodes × 2 sockets × 50 messages at once into one room: one gap-free `seq`.
async fn concurrent_sends_through_every_node(cluster: &Cluster, alice: &TestUser, bob: &TestUser) {
    let api = cluster.api();
    let room = api.open_chat(alice, bob).await; // the same pair: the same room
    let before = api.history(alice, &room, "?limit=1").await;
    let start = before.last().map_or(0, |m| m["seq"].as_i64().unwrap());
    let mut sockets = Vec::new();
    for i in 0..3 {
        for user in [alice, bob] {
            sockets.push(Socket::connect(&cluster.node(i).url, &user.token).await);
        }
    }
    let sends = sockets.iter().enumerate().flat_map(|(s, socket)| {
        let rid = room.clone();
        (0..50).map(move |i| {
            socket.emit("outgoing", json!({"rid": rid, "message": format!("c{s}-{i}"), "client_id": format!("c{s}-{i}")}))
        })
    });
    // Without acks (rust_socketio mismatches many concurrent acks): poll the history.
    futures_util::future::join_all(sends).await;
    let mut stored = Vec::new();
    for _ in 0..100 {
        stored = api
            .history(alice, &room, &format!("?after={start}&limit=200"))
            .await;
        let more = api
            .history(alice, &room, &format!("?after={}&limit=200", start + 200))
            .await;
        stored.extend(more);
        if stored.len() >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seqs(&stored),
        ((start + 1)..=(start + 300)).collect::<Vec<_>>()
    );
    let ids: HashSet<&str> = stored
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 300, "each message stored once");
    for s in sockets {
        s.close().await;
    }
}

/// docs/protocol.md, "Messenger features": a member removed through node 0 is
/// out on every node at once — node 1, which saw her send a moment before,
/// refuses her sends and delivers her nothing more —, and presence and typing
/// reach sockets on other nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_removal_presence_and_typing_cross_nodes() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let api = cluster.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let carol = api.register("carol").await;
    let rid = cluster
        .node(0)
        .api()
        .create_group(&alice, "Trip", &[&bob, &carol])
        .await;
    let [a] = cluster.node(0).hearing_all([&alice]).await;

    let [b] = cluster.node(1).hearing_all([&bob]).await;
    a.wait_for_match("presence", |p| {
        p["user_id"] == bob.id.as_str() && p["online"] == true
    })
    .await;
    let typing = json!({"rid": rid, "typing": true});
    assert_eq!(b.ack("typing", typing).await, json!({"ok": true}));
    let heard = a
        .wait_for_match("typing", |t| t["user_id"] == bob.id.as_str())
        .await;
    assert_eq!(
        heard,
        json!({"rid": rid, "user_id": bob.id, "username": "bob", "typing": true})
    );

    // Carol on node 2 and on node 1, which sees her send to the group (socket and API).
    let [carol_2] = cluster.node(2).hearing_all([&carol]).await;
    let [carol_1] = cluster.node(1).hearing_all([&carol]).await;
    carol_1.say(&rid, "hi from node 1").await;
    let messages = format!("/rooms/{rid}/messages");
    let node_1 = cluster.node(1).api();
    let hi = json!({"message": "hi over node 1's API"});
    let r = node_1.call_as(&carol, "POST", &messages, Some(hi)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    carol_2.hears("hi over node 1's API").await;

    let node_0 = cluster.node(0).api();
    node_0.remove_member(&alice, &rid, &carol).await;
    for socket in [&carol_1, &carol_2] {
        socket
            .wait_for_match("chat-removed", |p| p["rid"] == rid.as_str())
            .await;
    }
    for (event, payload) in [
        ("outgoing", json!({"rid": rid, "message": "still here?"})),
        ("sync", json!({"rid": rid, "after_seq": 0})),
    ] {
        let ack = carol_1.ack(event, payload).await;
        assert_eq!(
            ack["error"]["code"], "not_member",
            "{event} via node 1: {ack}"
        );
    }
    let still_here = json!({"message": "still here?"});
    let r = node_1
        .call_as(&carol, "POST", &messages, Some(still_here))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (403, "not_member"),
        "via node 1's API"
    );

    settle().await;
    let heard_1 = from_room(&carol_1, "message", &rid).len();
    let heard_2 = from_room(&carol_2, "message", &rid).len();
    b.say(&rid, "without carol").await;
    a.hears("without carol").await;
    settle().await;
    assert_eq!(from_room(&carol_1, "message", &rid).len(), heard_1);
    assert_eq!(from_room(&carol_2, "message", &rid).len(), heard_2);
    let history = api.history(&alice, &rid, "?limit=1").await;
    assert_eq!(
        history[0]["message"], "without carol",
        "the refused sends stored nothing"
    );

    // Added back through node 0, her sockets on nodes 1 and 2 hear the group again.
    node_0.add_member(&alice, &rid, &carol).await;
    b.say(&rid, "welcome back").await;
    for socket in [&carol_1, &carol_2] {
        socket.hears("welcome back").await;
    }
    let ack = carol_1
        .ack(
            "outgoing",
            json!({"rid": rid, "message": "glad to be back"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "node 1 lets her send again: {ack}");
    let seq = ack["message"]["seq"].clone();

    // An edit and a reaction made through node 1 reach node 0 as `message-updated`;
    // alice's read receipt on node 0 reaches node 1; a group created on node 2
    // appears live in a list on node 0.
    let edit = json!({"rid": rid, "seq": seq, "message": "glad to be back!"});
    assert_eq!(carol_1.ack("edit-message", edit).await["ok"], true);
    a.wait_for_match("message-updated", |m| m["message"] == "glad to be back!")
        .await;
    let react = json!({"rid": rid, "seq": seq, "emoji": "🎉"});
    assert_eq!(b.ack("react", react).await["ok"], true);
    a.wait_for_match("message-updated", |m| m["reactions"][0]["emoji"] == "🎉")
        .await;
    let read = json!({"rid": rid, "seq": seq});
    assert_eq!(a.ack("read", read).await["read_seq"], seq);
    b.wait_for_match("read", |r| {
        r["user_id"] == alice.id.as_str() && r["read_seq"] == seq
    })
    .await;
    let made = cluster
        .node(2)
        .api()
        .create_group(&bob, "Made on node 2", &[&alice])
        .await;
    a.wait_for_match("chat", |c| c["room_id"] == made.as_str())
        .await;

    b.close().await;
    let offline = a
        .wait_for_match("presence", |p| {
            p["user_id"] == bob.id.as_str() && p["online"] == false
        })
        .await;
    assert!(offline["last_seen"].is_number(), "{offline}");
    for socket in [a, carol_1, carol_2] {
        socket.close().await;
    }
}

/// The join/removal race of tests/features.rs across nodes: the member's
/// socket on node 1 joins while the owner removes them through node 0, 200
/// times; no message sent after a removal reaches it (a witness on node 2
/// hears them all).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_racing_a_removal_on_another_node_never_keeps_the_member_listening() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let api = cluster.node(0).api();
    let [alice, bob, carol] = api.register_each(["alice", "bob", "carol"]).await;
    let rid = api.create_group(&alice, "Race", &[&bob]).await;
    let [c] = cluster.node(1).hearing_all([&carol]).await;
    let [b] = cluster.node(2).hearing_all([&bob]).await;
    let joins_first = race_join_against_removal(&api, &alice, &carol, &rid, &c, &b, 200).await;
    eprintln!("the join answered ok first in {joins_first} of 200 rounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabling_by_the_cli_closes_the_users_sockets_on_every_node() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let api = cluster.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    let mut alices = Vec::new();
    let mut bobs = Vec::new();
    for i in 0..3 {
        alices.push(Socket::connect(&cluster.node(i).url, &alice.token).await);
        bobs.push(Socket::connect(&cluster.node(i).url, &bob.token).await);
    }

    // Another process, on the cluster's database: no node hears from it.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["user", "disable", "--email", &alice.email])
        .args(["--database-url", &cluster.database])
        .env("NATTER_LOG", "warn")
        .output()
        .expect("run natter user disable");
    assert!(run.status.success(), "{run:?}");
    let ran = std::time::Instant::now();
    // The bound is a second (docs/security.md); a loaded machine gets 3.
    for (i, socket) in alices.iter().enumerate() {
        assert!(
            socket.closed_within(Duration::from_secs(3)).await,
            "alice's socket on node {i} is still open {:?} after the command",
            ran.elapsed()
        );
    }
    eprintln!(
        "alice's sockets on 3 nodes closed {:?} after the command exited",
        ran.elapsed()
    );
    let sent = alices[0]
        .try_ack(
            "outgoing",
            json!({"rid": rid, "message": "after"}),
            Duration::from_secs(2),
        )
        .await;
    assert!(
        sent.as_ref().is_none_or(|ack| ack["ok"] != true),
        "{sent:?}"
    );
    // Bob's sockets stay, on every node, and still hear each other.
    for (i, socket) in bobs.iter().enumerate() {
        assert!(!socket.closed(), "bob's socket on node {i} was closed");
    }
    bobs[0].say(&rid, "still here").await;
    for socket in &bobs[1..] {
        socket.hears("still here").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_disabling_an_account_closes_its_sockets_on_every_node() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let api = cluster.api();
    // The first account is the admin.
    let admin = api.register("ann").await;
    let bob = api.register("bob").await;
    let mut bobs = Vec::new();
    for i in 0..3 {
        bobs.push(Socket::connect(&cluster.node(i).url, &bob.token).await);
    }
    let r = cluster
        .node(0)
        .api()
        .call_as(
            &admin,
            "PATCH",
            &format!("/admin/users/{}", bob.id),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let done = std::time::Instant::now();
    for (i, socket) in bobs.iter().enumerate() {
        assert!(
            socket.closed_within(Duration::from_secs(3)).await,
            "bob's socket on node {i} is still open {:?} after the answer",
            done.elapsed()
        );
    }
    // An admin's choice of who may join holds on every node at once.
    let closed = cluster
        .node(1)
        .api()
        .call_as(
            &admin,
            "PUT",
            "/admin/settings",
            Some(json!({"registration": "closed"})),
        )
        .await;
    assert_eq!(closed.status, 200, "{:?}", closed.body);
    for i in 0..3 {
        let refused = cluster
            .node(i)
            .api()
            .call(
                "POST",
                "/users",
                Some(json!({"username": format!("late{i}"), "email": format!("late{i}@example.test"), "password": common::PASSWORD})),
                None,
            )
            .await;
        assert_eq!(refused.code(), "registration_closed", "node {i}");
    }
}
