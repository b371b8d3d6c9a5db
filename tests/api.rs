//! PROTOCOL.md §2, the JSON API: each call's success and each of its error codes,
//! and that a refused request stores nothing.

mod common;

use common::{PASSWORD, Server, seqs};
use serde_json::{Value, json};

#[tokio::test]
async fn register_validates_and_refuses_duplicates() {
    let server = Server::start();
    let api = server.api();
    let r = api
        .call(
            "POST",
            "/users",
            Some(json!({"username": "Alice", "email": "Alice@Example.test", "password": PASSWORD})),
            None,
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["username"], "alice", "usernames are case-folded");
    assert_eq!(r.body["email"], "alice@example.test");
    assert!(r.body["id"].is_string());
    assert!(r.body.get("password_hash").is_none() && r.body.get("password").is_none());

    for (body, what) in [
        (
            json!({"username": "ALICE", "email": "other@example.test", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "other", "email": "alice@EXAMPLE.test", "password": PASSWORD}),
            "email",
        ),
    ] {
        let r = api.call("POST", "/users", Some(body), None).await;
        assert_eq!((r.status, r.code()), (409, "taken"), "duplicate {what}");
    }

    for body in [
        json!({"username": "ab", "email": "x1@example.test", "password": PASSWORD}),
        json!({"username": "has space", "email": "x2@example.test", "password": PASSWORD}),
        json!({"username": "x".repeat(33), "email": "x3@example.test", "password": PASSWORD}),
        json!({"username": "okname", "email": "not-an-email", "password": PASSWORD}),
        json!({"username": "okname", "email": "x4@example.test", "password": "short"}),
        json!({"email": "x5@example.test", "password": PASSWORD}),
        json!({"username": 5, "email": "x6@example.test", "password": PASSWORD}),
    ] {
        let r = api.call("POST", "/users", Some(body.clone()), None).await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "{body}");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // None of the refused registrations exists: their emails cannot log in.
    let r = api
        .call(
            "POST",
            "/sessions",
            Some(json!({"email": "x4@example.test", "password": "short"})),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let r = api
        .call(
            "POST",
            "/sessions",
            Some(json!({"email": "okname@example.test", "password": PASSWORD})),
            None,
        )
        .await;
    assert_eq!(r.status, 401);

    let bad_json = api
        .http
        .post(format!("{}/users", api.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    let body: serde_json::Value = bad_json.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid");
}

#[tokio::test]
async fn sessions_log_in_identify_and_revoke() {
    let server = Server::start();
    let api = server.api();
    let alice = api.register("alice").await;

    let r = api
        .call(
            "POST",
            "/sessions",
            Some(json!({"email": "ALICE@example.test", "password": PASSWORD})),
            None,
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.body["user"],
        json!({"id": alice.id, "username": "alice", "email": alice.email})
    );
    let second = r.body["token"].as_str().unwrap().to_owned();
    assert_ne!(second, alice.token, "every login mints a new token");

    for creds in [
        json!({"email": alice.email, "password": "wrong password"}),
        json!({"email": "nobody@example.test", "password": PASSWORD}),
    ] {
        let r = api.call("POST", "/sessions", Some(creds), None).await;
        assert_eq!((r.status, r.code()), (401, "bad_credentials"));
    }

    let r = api.call("GET", "/me", None, Some(&alice.token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"id": alice.id, "username": "alice", "email": alice.email})
    );
    for token in [None, Some("nonsense")] {
        let r = api.call("GET", "/me", None, token).await;
        assert_eq!((r.status, r.code()), (401, "unauthorized"));
    }

    let r = api
        .call("DELETE", "/sessions/current", None, Some(&alice.token))
        .await;
    assert_eq!(r.status, 204);
    let r = api.call("GET", "/me", None, Some(&alice.token)).await;
    assert_eq!(r.status, 401, "a revoked token stops working");
    let r = api
        .call("DELETE", "/sessions/current", None, Some(&alice.token))
        .await;
    assert_eq!(r.status, 401);
    let r = api.call("GET", "/me", None, Some(&second)).await;
    assert_eq!(r.status, 200, "other sessions live on");
}

#[tokio::test]
async fn direct_chats_are_one_room_per_pair() {
    let server = Server::start();
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;

    let r = api
        .call(
            "POST",
            "/chats",
            Some(json!({"email": bob.email})),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status, 201);
    let rid = r.body["room_id"].as_str().unwrap().to_owned();
    assert!(
        rid.len() >= 20,
        "room ids are long random strings, not sums: {rid}"
    );
    assert_eq!(r.body["kind"], "direct");
    assert_eq!(r.body["title"], "bob");
    assert_eq!(r.body["last_message"], serde_json::Value::Null);
    assert_eq!(r.body["unread"], 0);
    assert_eq!(
        r.body["members"],
        json!([
            {"id": alice.id, "username": "alice", "read_seq": 0, "online": false, "last_seen": null},
            {"id": bob.id, "username": "bob", "read_seq": 0, "online": false, "last_seen": null}
        ])
    );

    let r = api
        .call(
            "POST",
            "/chats",
            Some(json!({"email": alice.email})),
            Some(&bob.token),
        )
        .await;
    assert_eq!(
        (r.status, r.body["room_id"].as_str()),
        (200, Some(rid.as_str()))
    );
    assert_eq!(r.body["title"], "alice");
    let r = api
        .call(
            "POST",
            "/chats",
            Some(json!({"email": bob.email})),
            Some(&alice.token),
        )
        .await;
    assert_eq!(
        (r.status, r.body["room_id"].as_str()),
        (200, Some(rid.as_str()))
    );

    let r = api
        .call(
            "POST",
            "/chats",
            Some(json!({"email": alice.email})),
            Some(&alice.token),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "self"));
    let r = api
        .call(
            "POST",
            "/chats",
            Some(json!({"email": "nobody@example.test"})),
            Some(&alice.token),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "no_such_user"));
    let r = api
        .call("POST", "/chats", Some(json!({})), Some(&alice.token))
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid"));
    let r = api
        .call("POST", "/chats", Some(json!({"email": bob.email})), None)
        .await;
    assert_eq!(r.status, 401);
    let r = api.call("GET", "/chats", None, None).await;
    assert_eq!(r.status, 401);

    let r = api.call("GET", "/chats", None, Some(&alice.token)).await;
    assert_eq!(r.status, 200);
    let chats = r.body["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 1, "refused requests created no rooms");
    assert_eq!(chats[0]["room_id"], rid.as_str());
}

#[tokio::test]
async fn both_sides_adding_at_once_get_one_room() {
    let server = Server::start();
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let (a, b) = tokio::join!(api.open_chat(&alice, &bob), api.open_chat(&bob, &alice));
    assert_eq!(a, b);
}

#[tokio::test]
async fn messages_post_and_page_through_history() {
    let server = Server::start();
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let carol = api.register("carol").await;
    let rid = api.open_chat(&alice, &bob).await;
    let path = format!("/rooms/{rid}/messages");

    assert!(api.history(&bob, &rid, "").await.is_empty());
    for i in 1..=5 {
        let r = api
            .call(
                "POST",
                &path,
                Some(
                    json!({"message": format!("  m{i}  "), "sender_id": carol.id, "timestamp": 1}),
                ),
                Some(&alice.token),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["seq"], i);
        assert_eq!(r.body["message"], format!("m{i}"), "stored trimmed");
        assert_eq!(
            r.body["sender_id"],
            alice.id.as_str(),
            "the server decides the sender"
        );
        assert_eq!(r.body["sender_username"], "alice");
        assert_eq!(r.body["rid"], rid.as_str());
        assert_eq!(r.body["client_id"], serde_json::Value::Null);
        let ts = r.body["timestamp"].as_f64().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - ts).abs() < 60.0, "the server decides the time");
        assert!(r.body["id"].is_string());
    }

    assert_eq!(seqs(&api.history(&bob, &rid, "").await), [1, 2, 3, 4, 5]);
    assert_eq!(seqs(&api.history(&bob, &rid, "?limit=2").await), [4, 5]);
    assert_eq!(
        seqs(&api.history(&bob, &rid, "?before=4&limit=2").await),
        [2, 3]
    );
    assert_eq!(seqs(&api.history(&bob, &rid, "?after=3").await), [4, 5]);
    assert_eq!(
        seqs(&api.history(&bob, &rid, "?after=1&before=4").await),
        [2, 3]
    );
    assert_eq!(
        seqs(&api.history(&bob, &rid, "?after=1&limit=1").await),
        [2]
    );
    assert_eq!(
        seqs(&api.history(&bob, &rid, "?limit=1000").await).len(),
        5,
        "limit is capped, not refused"
    );
    for q in ["?limit=0", "?before=-1", "?after=x", "?limit=abc"] {
        let r = api
            .call("GET", &format!("{path}{q}"), None, Some(&bob.token))
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "{q}");
    }

    let r = api.call("GET", &path, None, Some(&carol.token)).await;
    assert_eq!((r.status, r.code()), (403, "not_member"));
    let r = api
        .call(
            "GET",
            "/rooms/no-such-room/messages",
            None,
            Some(&bob.token),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "no_such_room"));
    let r = api.call("GET", &path, None, None).await;
    assert_eq!(r.status, 401);

    // Refusals store nothing.
    let refusals = [
        (json!({"message": "   "}), &bob, 422, "empty"),
        (json!({"message": "x".repeat(4001)}), &bob, 413, "too_long"),
        (json!({"message": 42}), &bob, 422, "invalid"),
        (json!({}), &bob, 422, "invalid"),
        (
            json!({"message": "hi", "client_id": 7}),
            &bob,
            422,
            "invalid",
        ),
        (json!({"message": "let me in"}), &carol, 403, "not_member"),
    ];
    for (body, who, status, code) in refusals {
        let r = api
            .call("POST", &path, Some(body.clone()), Some(&who.token))
            .await;
        assert_eq!((r.status, r.code()), (status, code), "{body}");
    }
    let r = api
        .call(
            "POST",
            "/rooms/nope/messages",
            Some(json!({"message": "x"})),
            Some(&bob.token),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "no_such_room"));
    assert_eq!(seqs(&api.history(&bob, &rid, "").await), [1, 2, 3, 4, 5]);

    // 4000 characters (multi-byte) are accepted: the limit counts characters.
    let r = api
        .call(
            "POST",
            &path,
            Some(json!({"message": "é".repeat(4000)})),
            Some(&bob.token),
        )
        .await;
    assert_eq!((r.status, r.body["seq"].as_i64()), (201, Some(6)));

    // Idempotent resend.
    let body = json!({"message": "once", "client_id": "c-1"});
    let first = api
        .call("POST", &path, Some(body.clone()), Some(&bob.token))
        .await;
    let again = api.call("POST", &path, Some(body), Some(&bob.token)).await;
    assert_eq!(first.body, again.body);
    assert_eq!(first.body["client_id"], "c-1");
    assert_eq!(
        seqs(&api.history(&bob, &rid, "").await),
        [1, 2, 3, 4, 5, 6, 7]
    );
    // The same client_id from another sender is another message.
    let r = api
        .call(
            "POST",
            &path,
            Some(json!({"message": "mine", "client_id": "c-1"})),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.body["seq"], 8);
}

#[tokio::test]
async fn chat_list_shows_last_message_and_unread() {
    let server = Server::start();
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let carol = api.register("carol").await;
    let with_bob = api.open_chat(&alice, &bob).await;
    let with_carol = api.open_chat(&alice, &carol).await;
    for text in ["one", "two"] {
        api.call(
            "POST",
            &format!("/rooms/{with_bob}/messages"),
            Some(json!({"message": text})),
            Some(&bob.token),
        )
        .await;
    }
    api.call(
        "POST",
        &format!("/rooms/{with_carol}/messages"),
        Some(json!({"message": "hey"})),
        Some(&carol.token),
    )
    .await;

    let chats = api
        .call("GET", "/chats", None, Some(&alice.token))
        .await
        .body["chats"]
        .clone();
    let chats = chats.as_array().unwrap();
    assert_eq!(
        chats[0]["room_id"],
        with_carol.as_str(),
        "most recent activity first"
    );
    assert_eq!(chats[1]["room_id"], with_bob.as_str());
    assert_eq!(chats[1]["last_message"]["message"], "two");
    assert_eq!(chats[1]["last_message"]["seq"], 2);
    assert_eq!(chats[1]["unread"], 2);
    assert_eq!(chats[0]["unread"], 1);
    // Bob's own messages are not unread for him.
    let bobs = api.call("GET", "/chats", None, Some(&bob.token)).await.body["chats"].clone();
    assert_eq!(bobs[0]["unread"], 0);
    assert_eq!(bobs[0]["title"], "alice");
}

#[tokio::test]
async fn sends_are_rate_limited_per_user() {
    let server = Server::start_with(&["--send-rate", "1", "--send-burst", "3"]);
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    let path = format!("/rooms/{rid}/messages");
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = api
            .call(
                "POST",
                &path,
                Some(json!({"message": format!("m{i}")})),
                Some(&alice.token),
            )
            .await;
        statuses.push((r.status, r.code().to_owned()));
    }
    assert_eq!(
        statuses[..3].iter().map(|s| s.0).collect::<Vec<_>>(),
        [201, 201, 201]
    );
    assert_eq!(statuses[3], (429, "rate_limited".to_owned()));
    assert_eq!(
        seqs(&api.history(&alice, &rid, "").await),
        [1, 2, 3],
        "refused sends store nothing"
    );
    // Another user has their own budget.
    let r = api
        .call(
            "POST",
            &path,
            Some(json!({"message": "hi"})),
            Some(&bob.token),
        )
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn unknown_routes_and_oversized_bodies_get_json_errors() {
    let server = Server::start();
    let api = server.api();
    let r = api.call("GET", "/nope", None, None).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    let huge = json!({"message": "x".repeat(70_000)});
    let r = api
        .call(
            "POST",
            &format!("/rooms/{rid}/messages"),
            Some(huge),
            Some(&alice.token),
        )
        .await;
    assert_eq!((r.status, r.code()), (413, "too_long"));
}

#[tokio::test]
async fn history_pages_hold_at_most_two_hundred() {
    let server = Server::start_with(&["--send-rate", "100000", "--send-burst", "100000"]);
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    for i in 0..205 {
        let body = json!({"message": format!("m{i}")});
        api.call(
            "POST",
            &format!("/rooms/{rid}/messages"),
            Some(body),
            Some(&alice.token),
        )
        .await;
    }
    let page = api.history(&bob, &rid, "?limit=1000").await;
    assert_eq!(seqs(&page), (6..=205).collect::<Vec<_>>());
    assert_eq!(
        api.history(&bob, &rid, "").await.len(),
        50,
        "the default page"
    );
}

#[tokio::test]
async fn the_chat_list_and_history_come_in_pages_with_cursors() {
    let server = Server::start();
    let api = server.api();
    let [me, a, b, c, d] = api.register_each(["moe", "ann", "bob", "cyd", "dan"]).await;
    let mut rooms = Vec::new();
    for (i, other) in [&a, &b, &c, &d].into_iter().enumerate() {
        let rid = api.open_chat(&me, other).await;
        let body = Some(json!({"message": format!("hello {i}")}));
        let sent = api
            .call_as(other, "POST", &format!("/rooms/{rid}/messages"), body)
            .await;
        assert_eq!(sent.status, 201);
        rooms.push(rid);
        // Distinct activity times, so the order is the sends' (newest first).
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let all = api.call_as(&me, "GET", "/chats", None).await;
    assert_eq!(all.body["has_more"], false);
    assert_eq!(all.body["next_before"], Value::Null);
    let order: Vec<&str> = all.body["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["room_id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = rooms.iter().rev().map(String::as_str).collect();
    assert_eq!(order, newest_first);
    assert!(all.body["chats"][0]["last_activity"].as_f64().unwrap() > 1e9);

    // Two at a time: every chat once, in order, then the end.
    let mut paged = Vec::new();
    let mut query = "/chats?limit=2".to_owned();
    for page in 0.. {
        let r = api.call_as(&me, "GET", &query, None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        for chat in r.body["chats"].as_array().unwrap() {
            paged.push(chat["room_id"].as_str().unwrap().to_owned());
        }
        if r.body["has_more"] == false {
            assert_eq!(r.body["next_before"], Value::Null);
            assert_eq!(page, 1);
            break;
        }
        let next = r.body["next_before"].as_str().unwrap();
        query = format!("/chats?limit=2&before={next}");
    }
    assert_eq!(paged, newest_first);
    for bad in ["limit=0", "limit=x", "before=nonsense", "before=12"] {
        let r = api
            .call_as(&me, "GET", &format!("/chats?{bad}"), None)
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "{bad}");
    }

    // History: `has_more` in the direction asked for.
    let rid = &rooms[0];
    for i in 0..5 {
        let body = Some(json!({"message": format!("m{i}")}));
        api.call_as(&me, "POST", &format!("/rooms/{rid}/messages"), body)
            .await;
    }
    let page = |q: &str| format!("/rooms/{rid}/messages{q}");
    let latest = api.call_as(&me, "GET", &page("?limit=4"), None).await;
    assert_eq!(
        seqs(latest.body["messages"].as_array().unwrap()),
        [3, 4, 5, 6]
    );
    assert_eq!(latest.body["has_more"], true);
    let older = api
        .call_as(&me, "GET", &page("?limit=4&before=3"), None)
        .await;
    assert_eq!(seqs(older.body["messages"].as_array().unwrap()), [1, 2]);
    assert_eq!(older.body["has_more"], false);
    let newer = api
        .call_as(&me, "GET", &page("?limit=4&after=1"), None)
        .await;
    assert_eq!(
        seqs(newer.body["messages"].as_array().unwrap()),
        [2, 3, 4, 5]
    );
    assert_eq!(newer.body["has_more"], true);
    let last = api
        .call_as(&me, "GET", &page("?limit=4&after=4"), None)
        .await;
    assert_eq!(last.body["has_more"], false);
    let none = api.call_as(&me, "GET", &page("?after=6"), None).await;
    assert_eq!(none.body["messages"], json!([]));
    assert_eq!(none.body["has_more"], false);
}
