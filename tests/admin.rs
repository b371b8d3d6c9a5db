//! Administration (docs/protocol.md, "Administration"): only admins get in;
//! they list and search accounts, disable and enable them (the sockets
//! drop at once), set passwords, read the counts, choose who may join, and
//! delete any message for everyone.

mod common;

use std::time::Duration;

use common::{Api, PASSWORD, Server, Socket, TestUser};
use serde_json::{Value, json};

async fn patch_user(api: &Api, admin: &TestUser, user: &TestUser, body: Value) -> common::Reply {
    api.call_as(
        admin,
        "PATCH",
        &format!("/admin/users/{}", user.id),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn members_are_refused_every_admin_route() {
    let server = Server::start();
    let api = server.api();
    let [_admin, bob] = api.register_each(["ann", "bob"]).await;
    for (method, path, body) in [
        ("GET", "/admin/users".to_owned(), None),
        (
            "PATCH",
            format!("/admin/users/{}", bob.id),
            Some(json!({"disabled": true})),
        ),
        ("GET", "/admin/stats".to_owned(), None),
        ("GET", "/admin/settings".to_owned(), None),
        (
            "PUT",
            "/admin/settings".to_owned(),
            Some(json!({"registration": "closed"})),
        ),
        ("DELETE", "/admin/rooms/r/messages/1".to_owned(), None),
    ] {
        let r = api.call_as(&bob, method, &path, body).await;
        assert_eq!((r.status, r.code()), (403, "not_admin"), "{method} {path}");
    }
    let me = api.call_as(&bob, "GET", "/me/profile", None).await;
    assert_eq!(me.body["admin"], false);
    // Nothing changed: registration is still open.
    assert_eq!(api.register("cyd").await.username, "cyd");
}

#[tokio::test]
async fn an_admin_pages_and_searches_accounts() {
    let server = Server::start();
    let api = server.api();
    let [admin, ..] = api
        .register_each(["ann", "bea", "bert", "bob", "cyd"])
        .await;
    let page = api
        .call_as(&admin, "GET", "/admin/users?limit=2", None)
        .await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["users"][0]["username"], "ann");
    assert_eq!(page.body["users"][0]["admin"], true);
    assert_eq!(page.body["users"][0]["email"], "ann@example.test");
    assert_eq!(page.body["has_more"], true);
    let after = page.body["next_after"].as_str().unwrap();
    let next = api
        .call_as(
            &admin,
            "GET",
            &format!("/admin/users?limit=2&after={after}"),
            None,
        )
        .await;
    let names: Vec<&str> = next.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bert", "bob"]);
    let found = api.call_as(&admin, "GET", "/admin/users?q=BE", None).await;
    let names: Vec<&str> = found.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bea", "bert"]);
    assert_eq!(found.body["has_more"], false);
    for bad in ["limit=0", "limit=201", "after=x"] {
        let r = api
            .call_as(&admin, "GET", &format!("/admin/users?{bad}"), None)
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "{bad}");
    }
}

#[tokio::test]
async fn disabling_an_account_drops_its_sockets_and_enabling_lets_it_back() {
    let server = Server::start();
    let api = server.api();
    let [admin, bob, cyd] = api.register_each(["ann", "bob", "cyd"]).await;
    let rid = api.open_chat(&bob, &cyd).await;
    let bobs = Socket::connect(&server.url, &bob.token).await;
    let cyds = Socket::connect(&server.url, &cyd.token).await;

    let r = patch_user(&api, &admin, &bob, json!({"disabled": true})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["disabled"], true);
    assert!(bobs.closed_within(Duration::from_secs(3)).await);
    assert!(!cyds.closed());
    assert_eq!(api.call_as(&bob, "GET", "/me", None).await.status, 401);
    let login = api
        .call(
            "POST",
            "/sessions",
            Some(json!({"email": bob.email, "password": PASSWORD})),
            None,
        )
        .await;
    assert_eq!((login.status, login.code()), (403, "disabled"));

    let r = patch_user(&api, &admin, &bob, json!({"disabled": false})).await;
    assert_eq!(r.body["disabled"], false);
    let bob = api.log_in("bob").await;
    let r = api
        .call_as(
            &bob,
            "POST",
            &format!("/rooms/{rid}/messages"),
            Some(json!({"message": "back"})),
        )
        .await;
    assert_eq!(r.status, 201);

    // An admin cannot lock themselves out; bad input changes nothing.
    let me = patch_user(&api, &admin, &admin, json!({"disabled": true})).await;
    assert_eq!((me.status, me.code()), (422, "invalid"));
    let bad = patch_user(&api, &admin, &bob, json!({"disabled": "yes"})).await;
    assert_eq!(bad.status, 422);
    let nobody = api
        .call_as(
            &admin,
            "PATCH",
            "/admin/users/999999",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(nobody.status, 404);
    assert_eq!(api.call_as(&admin, "GET", "/me", None).await.status, 200);
}

#[tokio::test]
async fn an_admin_sets_a_password_and_every_session_of_the_account_ends() {
    let server = Server::start();
    let api = server.api();
    let [admin, bob] = api.register_each(["ann", "bob"]).await;
    let weak = patch_user(&api, &admin, &bob, json!({"password": "short"})).await;
    assert_eq!((weak.status, weak.code()), (422, "invalid"));
    assert_eq!(api.call_as(&bob, "GET", "/me", None).await.status, 200);

    let r = patch_user(
        &api,
        &admin,
        &bob,
        json!({"password": "a brand new secret"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(api.call_as(&bob, "GET", "/me", None).await.status, 401);
    let old = api
        .call(
            "POST",
            "/sessions",
            Some(json!({"email": bob.email, "password": PASSWORD})),
            None,
        )
        .await;
    assert_eq!(old.status, 401);
    let new = api
        .call(
            "POST",
            "/sessions",
            Some(json!({"email": bob.email, "password": "a brand new secret"})),
            None,
        )
        .await;
    assert_eq!(new.status, 201, "{:?}", new.body);
}

#[tokio::test]
async fn the_stats_count_what_the_server_holds() {
    let server = Server::start();
    let api = server.api();
    let [admin, bob, cyd] = api.register_each(["ann", "bob", "cyd"]).await;
    let rid = api.open_chat(&admin, &bob).await;
    api.create_group(&admin, "Club", &[&bob, &cyd]).await;
    api.call_as(
        &admin,
        "POST",
        &format!("/rooms/{rid}/messages"),
        Some(json!({"message": "hi"})),
    )
    .await;
    patch_user(&api, &admin, &cyd, json!({"disabled": true})).await;
    let _socket = Socket::connect(&server.url, &bob.token).await;
    let stats = api.call_as(&admin, "GET", "/admin/stats", None).await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(stats.body["database"], true);
    assert_eq!(
        stats.body["counts"],
        json!({
            "users": 3, "disabled_users": 1, "direct_rooms": 1, "groups": 1,
            // The greeting and the group's "created" note.
            "messages": 2,
            "sessions": 2, "attachments": 0
        })
    );
    assert_eq!(stats.body["sockets_on_this_node"], 1);
    assert_eq!(stats.body["registration"], "open");
    assert!(stats.body["version"].is_string());
}

#[tokio::test]
async fn an_admin_chooses_who_may_join_and_null_goes_back_to_the_flags() {
    let server = Server::start_with(&["--registration", "invite"]);
    let api = server.api();
    let admin = api.register("ann").await;
    let sign_up = |name: &'static str| {
        let api = &api;
        async move {
            api.call(
                "POST",
                "/users",
                Some(json!({"username": name, "email": format!("{name}@example.test"), "password": PASSWORD})),
                None,
            )
            .await
        }
    };
    assert_eq!(sign_up("bob").await.code(), "invite_required");
    let set = api
        .call_as(
            &admin,
            "PUT",
            "/admin/settings",
            Some(json!({"registration": "open"})),
        )
        .await;
    assert_eq!(
        set.body,
        json!({"registration": "open", "members_may_invite": false})
    );
    assert_eq!(sign_up("bob").await.status, 201);
    let bob = api.log_in("bob").await;
    // Members may invite only when the admin says so.
    let refused = api.call_as(&bob, "POST", "/invites", Some(json!({}))).await;
    assert_eq!(refused.code(), "not_admin");
    api.call_as(
        &admin,
        "PUT",
        "/admin/settings",
        Some(json!({"members_may_invite": true})),
    )
    .await;
    let invite = api.call_as(&bob, "POST", "/invites", Some(json!({}))).await;
    assert_eq!(invite.status, 201, "{:?}", invite.body);

    let bad = api
        .call_as(
            &admin,
            "PUT",
            "/admin/settings",
            Some(json!({"registration": "sometimes"})),
        )
        .await;
    assert_eq!(bad.status, 422);
    let closed = api
        .call_as(
            &admin,
            "PUT",
            "/admin/settings",
            Some(json!({"registration": "closed"})),
        )
        .await;
    assert_eq!(closed.body["registration"], "closed");
    assert_eq!(sign_up("cyd").await.code(), "registration_closed");
    let back = api
        .call_as(
            &admin,
            "PUT",
            "/admin/settings",
            Some(json!({"registration": null, "members_may_invite": false})),
        )
        .await;
    assert_eq!(
        back.body,
        json!({"registration": "invite", "members_may_invite": false})
    );
    let settings = api.call_as(&admin, "GET", "/admin/settings", None).await;
    assert_eq!(settings.body["registration"], "invite");
    assert_eq!(sign_up("cyd").await.code(), "invite_required");
}

#[tokio::test]
async fn an_admin_deletes_a_message_for_everyone_and_the_room_is_told() {
    let server = Server::start();
    let api = server.api();
    let [admin, bob, cyd] = api.register_each(["ann", "bob", "cyd"]).await;
    let rid = api.open_chat(&bob, &cyd).await;
    let [cyd_hears] = server.hearing_all([&cyd]).await;
    let sent = api
        .call_as(
            &bob,
            "POST",
            &format!("/rooms/{rid}/messages"),
            Some(json!({"message": "spam spam"})),
        )
        .await;
    let seq = sent.body["seq"].as_i64().unwrap();
    cyd_hears.hears("spam spam").await;

    // The admin is no member of the room, and needs not be.
    let r = api
        .call_as(
            &admin,
            "DELETE",
            &format!("/admin/rooms/{rid}/messages/{seq}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["message"]["kind"], "system");
    assert_eq!(
        r.body["message"]["message"],
        "a moderator deleted a message of bob"
    );
    let note = cyd_hears
        .wait_for_match("message", |m| m["kind"] == "system")
        .await;
    assert_eq!(note["seq"], seq + 1);
    let updated = cyd_hears
        .wait_for_match("message-updated", |m| m["seq"] == seq)
        .await;
    assert_eq!(
        (updated["deleted"].clone(), updated["message"].clone()),
        (json!(true), json!(""))
    );
    let history = api.history(&cyd, &rid, "").await;
    assert_eq!(history[0]["deleted"], true);

    // Again, or a message that is not there: refused.
    let again = api
        .call_as(
            &admin,
            "DELETE",
            &format!("/admin/rooms/{rid}/messages/{seq}"),
            None,
        )
        .await;
    assert_eq!((again.status, again.code()), (409, "deleted"));
    let missing = api
        .call_as(
            &admin,
            "DELETE",
            &format!("/admin/rooms/{rid}/messages/99"),
            None,
        )
        .await;
    assert_eq!((missing.status, missing.code()), (404, "no_such_message"));
}
