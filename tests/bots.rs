//! Bots and their scoped tokens (docs/protocol.md, "Bots and webhooks"): a
//! bot joins rooms the way people do, its tokens send and read within
//! their scopes and rooms and are refused outside them (403
//! `forbidden_scope`), a revoked token or deleted bot is refused at once,
//! and the budgets of bots and tokens hold.

mod common;

use common::{Api, Reply, Server, Socket, TestUser, connect_error};
use serde_json::{Value, json};

async fn make_bot(api: &Api, owner: &TestUser, name: &str) -> Reply {
    api.call_as(owner, "POST", "/bots", Some(json!({"username": name})))
        .await
}

async fn make_token(api: &Api, owner: &TestUser, bot: &str, body: Value) -> Reply {
    api.call_as(owner, "POST", &format!("/bots/{bot}/tokens"), Some(body))
        .await
}

/// A bot's secret, from the answer that made it.
fn secret(made: &Reply) -> String {
    assert_eq!(made.status, 201, "{:?}", made.body);
    made.body["token"].as_str().unwrap().to_owned()
}

async fn send(api: &Api, token: &str, rid: &str, text: &str) -> Reply {
    let path = format!("/rooms/{rid}/messages");
    api.call("POST", &path, Some(json!({"message": text})), Some(token))
        .await
}

#[tokio::test]
async fn a_bot_token_acts_within_its_scopes_and_rooms_only() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let made = make_bot(&api, &ann, "Helper").await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.body["username"], "helper");
    assert_eq!(made.body["email"], "helper@bots.invalid");
    assert_eq!(made.body["bot"], true);
    assert_eq!(made.body["owner_id"], ann.id.as_str());
    let bot_id = made.body["id"].as_str().unwrap().to_owned();
    let listed = api.call_as(&ann, "GET", "/bots", None).await;
    assert_eq!(listed.body["bots"][0]["id"], bot_id.as_str());
    assert_eq!(
        api.call_as(&bob, "GET", "/bots", None).await.body["bots"],
        json!([])
    );

    // It joins rooms the way people do: by its email.
    let emails = json!({"title": "Ops", "emails": [bob.email, "helper@bots.invalid"]});
    let ops = api.call_as(&ann, "POST", "/groups", Some(emails)).await;
    assert_eq!(ops.status, 201, "{:?}", ops.body);
    let ops = ops.body["room_id"].as_str().unwrap().to_owned();
    let other = api
        .call_as(
            &ann,
            "POST",
            "/groups",
            Some(json!({"title": "Other", "emails": ["helper@bots.invalid"]})),
        )
        .await;
    let other = other.body["room_id"].as_str().unwrap().to_owned();

    // Members show it as a bot (and people without the field).
    let members = api
        .call_as(&bob, "GET", &format!("/rooms/{ops}/members"), None)
        .await;
    let members = members.body["members"].as_array().unwrap().clone();
    let marks: Vec<(&Value, Option<&Value>)> = members
        .iter()
        .map(|m| (&m["username"], m.get("bot")))
        .collect();
    assert!(
        marks.contains(&(&json!("helper"), Some(&json!(true)))),
        "{marks:?}"
    );
    assert!(marks.contains(&(&json!("bob"), None)), "{marks:?}");
    let chats = api.call_as(&bob, "GET", "/chats", None).await;
    let listed = chats.body["chats"][0]["members"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        listed
            .iter()
            .any(|m| m["username"] == "helper" && m["bot"] == true)
    );

    let sender = secret(
        &make_token(
            &api,
            &ann,
            &bot_id,
            json!({"scopes": ["send"], "rooms": [ops]}),
        )
        .await,
    );
    assert!(sender.starts_with("nbt_"), "{sender}");
    let bob_socket = Socket::connect(&server.url, &bob.token).await;
    let sent = send(&api, &sender, &ops, "deploy finished").await;
    assert_eq!(sent.status, 201, "{:?}", sent.body);
    assert_eq!(sent.body["sender_username"], "helper");
    assert_eq!(sent.body["sender_id"], bot_id.as_str());
    let heard = bob_socket.hears("deploy finished").await;
    assert_eq!(heard["seq"], sent.body["seq"]);

    // Outside its rooms, or its scopes: 403 forbidden_scope, nothing stored.
    let refused = send(&api, &sender, &other, "elsewhere").await;
    assert_eq!((refused.status, refused.code()), (403, "forbidden_scope"));
    let history = format!("/rooms/{ops}/messages");
    let refused = api.call("GET", &history, None, Some(&sender)).await;
    assert_eq!((refused.status, refused.code()), (403, "forbidden_scope"));
    let refused = api.call("GET", "/chats", None, Some(&sender)).await;
    assert_eq!((refused.status, refused.code()), (403, "forbidden_scope"));
    let other_history = api.history(&ann, &other, "").await;
    assert!(other_history.iter().all(|m| m["message"] != "elsewhere"));

    // A read token reads every room of the bot, and sends nothing.
    let reader = secret(&make_token(&api, &ann, &bot_id, json!({"scopes": ["read"]})).await);
    let page = api.call("GET", &history, None, Some(&reader)).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert!(
        page.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["message"] == "deploy finished")
    );
    let chats = api.call("GET", "/chats", None, Some(&reader)).await;
    assert_eq!(chats.body["chats"].as_array().unwrap().len(), 2);
    let refused = send(&api, &reader, &ops, "read only").await;
    assert_eq!((refused.status, refused.code()), (403, "forbidden_scope"));
    // One limited to a room lists only that room.
    let limited = secret(
        &make_token(
            &api,
            &ann,
            &bot_id,
            json!({"scopes": ["read", "send"], "rooms": [other]}),
        )
        .await,
    );
    let chats = api.call("GET", "/chats", None, Some(&limited)).await;
    let rooms: Vec<&Value> = chats.body["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["room_id"])
        .collect();
    assert_eq!(rooms, [&json!(other)]);
    assert_eq!(send(&api, &limited, &other, "in my room").await.status, 201);

    // Everything that is neither reading nor sending is a person's alone.
    let all = secret(&make_token(&api, &ann, &bot_id, json!({"scopes": ["read", "send"]})).await);
    for (method, path, body) in [
        ("POST", "/chats".to_owned(), json!({"email": ann.email})),
        (
            "POST",
            "/groups".to_owned(),
            json!({"title": "Mine", "emails": []}),
        ),
        (
            "PATCH",
            format!("/rooms/{ops}"),
            json!({"title": "Renamed"}),
        ),
        (
            "POST",
            format!("/rooms/{ops}/members"),
            json!({"email": ann.email}),
        ),
        (
            "PUT",
            format!("/rooms/{ops}/notify"),
            json!({"notify": "all"}),
        ),
        ("GET", "/sessions".to_owned(), Value::Null),
        ("DELETE", "/sessions/current".to_owned(), Value::Null),
        (
            "PUT",
            "/me/password".to_owned(),
            json!({"current_password": "x", "new_password": "yyyyyyyyyy"}),
        ),
        ("GET", "/bots".to_owned(), Value::Null),
        ("POST", "/bots".to_owned(), json!({"username": "child"})),
        ("POST", "/invites".to_owned(), json!({})),
        ("GET", "/push/subscriptions".to_owned(), Value::Null),
        (
            "POST",
            format!("/rooms/{ops}/webhooks"),
            json!({"name": "hook"}),
        ),
        ("GET", "/webhooks".to_owned(), Value::Null),
        (
            "POST",
            "/webhooks".to_owned(),
            json!({"url": "https://example.com/", "events": ["message"]}),
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let r = api.call(method, &path, body, Some(&all)).await;
        assert_eq!(
            (r.status, r.code()),
            (403, "forbidden_scope"),
            "{method} {path}"
        );
    }
    assert_eq!(send(&api, &all, &ops, "still fine").await.status, 201);

    // Socket.IO is refused to bot tokens, clearly.
    let why = connect_error(&server.url, json!({"token": all})).await;
    assert!(why.contains("forbidden_scope"), "{why}");
    // And no password opens a bot.
    let login = api
        .call(
            "POST",
            "/sessions",
            Some(json!({"email": "helper@bots.invalid", "password": "correct horse battery"})),
            None,
        )
        .await;
    assert_eq!((login.status, login.code()), (401, "bad_credentials"));

    // The list shows what each token may do, never a secret.
    let tokens = api
        .call_as(&ann, "GET", &format!("/bots/{bot_id}/tokens"), None)
        .await;
    let tokens = tokens.body["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 4);
    assert_eq!(tokens[0]["scopes"], json!(["send"]));
    assert_eq!(tokens[0]["rooms"], json!([ops]));
    assert_eq!(tokens[1]["rooms"], Value::Null);
    assert!(tokens.iter().all(|t| t.get("token").is_none()));
    assert!(!format!("{tokens:?}").contains(&sender));
    // Bob may not see or touch ann's bot.
    let path = format!("/bots/{bot_id}/tokens");
    let r = api.call_as(&bob, "GET", &path, None).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));

    // Revoked: refused at once.
    let first = tokens[0]["id"].as_str().unwrap();
    let r = api
        .call_as(
            &ann,
            "DELETE",
            &format!("/bots/{bot_id}/tokens/{first}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = send(&api, &sender, &ops, "after revocation").await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let r = api
        .call_as(
            &ann,
            "DELETE",
            &format!("/bots/{bot_id}/tokens/{first}"),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));

    // A deleted bot: every token refused, its messages stay.
    let r = api
        .call_as(&ann, "DELETE", &format!("/bots/{bot_id}"), None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(send(&api, &all, &ops, "gone").await.status, 401);
    assert_eq!(
        api.call("GET", "/chats", None, Some(&reader)).await.status,
        401
    );
    assert_eq!(
        api.call_as(&ann, "GET", "/bots", None).await.body["bots"],
        json!([])
    );
    let kept = api.history(&bob, &ops, "").await;
    assert!(kept.iter().any(|m| m["message"] == "deploy finished"));
}

#[tokio::test]
async fn bots_and_tokens_have_budgets_and_rules() {
    let server = Server::start();
    let api = server.api();
    let [ann] = api.register_each(["ann"]).await;
    for bad in [
        json!({}),
        json!({"username": "x"}),
        json!({"username": "no spaces"}),
    ] {
        let r = api.call_as(&ann, "POST", "/bots", Some(bad.clone())).await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "{bad}");
    }
    let r = make_bot(&api, &ann, "ann").await;
    assert_eq!((r.status, r.code()), (409, "taken"));

    let mut ids = Vec::new();
    for n in 0..10 {
        let r = make_bot(&api, &ann, &format!("bot{n}")).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let r = make_bot(&api, &ann, "bot10").await;
    assert_eq!((r.status, r.code()), (409, "too_many"));
    // Deleting one makes room.
    let r = api
        .call_as(&ann, "DELETE", &format!("/bots/{}", ids[9]), None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(make_bot(&api, &ann, "bot10").await.status, 201);
    let r = api
        .call_as(&ann, "DELETE", &format!("/bots/{}", ids[9]), None)
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));

    let bot = &ids[0];
    for bad in [
        json!({}),
        json!({"scopes": []}),
        json!({"scopes": ["admin"]}),
        json!({"scopes": ["read"], "rooms": []}),
        json!({"scopes": ["read"], "rooms": [""]}),
    ] {
        let r = make_token(&api, &ann, bot, bad.clone()).await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "{bad}");
    }
    for _ in 0..10 {
        secret(&make_token(&api, &ann, bot, json!({"scopes": ["read"]})).await);
    }
    let r = make_token(&api, &ann, bot, json!({"scopes": ["read"]})).await;
    assert_eq!((r.status, r.code()), (409, "too_many"));
    let tokens = api
        .call_as(&ann, "GET", &format!("/bots/{bot}/tokens"), None)
        .await;
    assert_eq!(tokens.body["tokens"].as_array().unwrap().len(), 10);
}
