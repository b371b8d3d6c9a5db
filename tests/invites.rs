//! Who may join (docs/protocol.md, "Who may join"): the registration modes,
//! the first account as admin, invitations (their uses, expiry, revocation
//! and the group they bring a person into), over the JSON API and the
//! sign-up page.

mod common;

use std::time::Duration;

use common::{Api, PASSWORD, Reply, Server, TestUser};
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::{Value, json};

async fn sign_up(api: &Api, name: &str, invite: Option<&str>) -> Reply {
    let mut body =
        json!({"username": name, "email": format!("{name}@example.test"), "password": PASSWORD});
    if let Some(code) = invite {
        body["invite"] = json!(code);
    }
    api.call("POST", "/users", Some(body), None).await
}

async fn invite(api: &Api, by: &TestUser, body: Value) -> Reply {
    api.call_as(by, "POST", "/invites", Some(body)).await
}

#[tokio::test]
async fn an_invite_only_server_takes_people_with_an_invitation_into_its_group() {
    let server = Server::start_with(&["--registration", "invite"]);
    let api = server.api();
    // The first account needs none: it is the admin, who sets the server up.
    assert_eq!(sign_up(&api, "ann", None).await.status, 201);
    let ann = api.log_in("ann").await;
    let refused = sign_up(&api, "bob", None).await;
    assert_eq!((refused.status, refused.code()), (403, "invite_required"));
    assert_eq!(
        api.call(
            "POST",
            "/sessions",
            Some(json!({"email": "bob@example.test", "password": PASSWORD})),
            None
        )
        .await
        .status,
        401
    );

    let cyd_invite = invite(&api, &ann, json!({})).await;
    assert_eq!(cyd_invite.status, 201, "{:?}", cyd_invite.body);
    assert_eq!(
        sign_up(&api, "cyd", cyd_invite.body["code"].as_str())
            .await
            .status,
        201
    );
    let cyd = api.log_in("cyd").await;
    let group = api.create_group(&ann, "Team", &[&cyd]).await;

    let made = invite(&api, &ann, json!({"room_id": group, "max_uses": 2})).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let code = made.body["code"].as_str().unwrap().to_owned();
    assert!(code.len() >= 22, "unguessable: {code}");
    assert_eq!(made.body["url"], format!("/register?invite={code}"));
    assert_eq!(
        (made.body["uses"].clone(), made.body["max_uses"].clone()),
        (json!(0), json!(2))
    );

    // A taken username: refused, and the use is given back.
    assert_eq!(sign_up(&api, "cyd", Some(&code)).await.code(), "taken");
    assert_eq!(sign_up(&api, "bob", Some(&code)).await.status, 201);
    let bob = api.log_in("bob").await;
    let chats = api.call_as(&bob, "GET", "/chats", None).await;
    let team = &chats.body["chats"][0];
    assert_eq!(team["room_id"], group.as_str(), "bob is in the group");
    assert_eq!(
        team["last_message"]["message"],
        "bob joined with ann's invitation"
    );
    assert_eq!(team["last_message"]["kind"], "system");

    assert_eq!(
        sign_up(&api, "dan", Some(&code)).await.status,
        201,
        "its second use"
    );
    let used_up = sign_up(&api, "eve", Some(&code)).await;
    assert_eq!((used_up.status, used_up.code()), (403, "invalid_invite"));
    let unknown = sign_up(&api, "eve", Some("no-such-code")).await;
    assert_eq!(unknown.code(), "invalid_invite");

    // Revoked, or expired: no more.
    let revoked = invite(&api, &ann, json!({})).await.body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api
        .call_as(&ann, "DELETE", &format!("/invites/{revoked}"), None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        sign_up(&api, "eve", Some(&revoked)).await.code(),
        "invalid_invite"
    );
    let short = invite(&api, &ann, json!({"expires_in_secs": 1})).await.body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        sign_up(&api, "eve", Some(&short)).await.code(),
        "invalid_invite"
    );

    let listed = api.call_as(&ann, "GET", "/invites", None).await;
    let uses: Vec<(i64, bool)> = listed.body["invites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["uses"].as_i64().unwrap(), i["revoked"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        uses,
        [(0, false), (0, true), (2, false), (1, false)],
        "newest first"
    );
}

#[tokio::test]
async fn only_admins_invite_unless_members_may_and_group_invitations_are_their_owners() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob, cyd] = api.register_each(["ann", "bob", "cyd"]).await;
    let r = invite(&api, &bob, json!({})).await;
    assert_eq!((r.status, r.code()), (403, "not_admin"));
    assert_eq!(
        api.call_as(&bob, "GET", "/invites", None).await.body["invites"],
        json!([])
    );

    let group = api.create_group(&bob, "Bob's", &[&cyd]).await;
    let direct = api.open_chat(&ann, &bob).await;
    let r = invite(&api, &ann, json!({"room_id": group})).await;
    assert_eq!(r.code(), "not_member", "ann is not in bob's group");
    let r = invite(&api, &ann, json!({"room_id": direct})).await;
    assert_eq!(r.code(), "not_group");
    for bad in [
        json!({"max_uses": 0}),
        json!({"max_uses": 1001}),
        json!({"expires_in_secs": 0}),
        json!({"room_id": 7}),
    ] {
        assert_eq!(
            invite(&api, &ann, bad.clone()).await.code(),
            "invalid",
            "{bad}"
        );
    }
    // Someone else's invitation is not mine to revoke; an admin may.
    let code = invite(&api, &ann, json!({})).await.body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api
        .call_as(&bob, "DELETE", &format!("/invites/{code}"), None)
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));

    let server = Server::start_with(&["--members-may-invite"]);
    let api = server.api();
    let [_, bob, cyd] = api.register_each(["ann", "bob", "cyd"]).await;
    let group = api.create_group(&bob, "Bob's", &[&cyd]).await;
    let r = invite(&api, &cyd, json!({"room_id": group})).await;
    assert_eq!(
        r.code(),
        "not_owner",
        "a group's invitations are its owner's"
    );
    let r = invite(&api, &bob, json!({"room_id": group})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn a_closed_server_takes_no_new_accounts() {
    let server = Server::start_with(&["--registration", "closed"]);
    let api = server.api();
    assert_eq!(
        sign_up(&api, "ann", None).await.status,
        201,
        "the first, its admin"
    );
    let ann = api.log_in("ann").await;
    let code = invite(&api, &ann, json!({})).await.body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    for with in [None, Some(code.as_str())] {
        let r = sign_up(&api, "bob", with).await;
        assert_eq!(
            (r.status, r.code()),
            (403, "registration_closed"),
            "{with:?}"
        );
    }
    let page = reqwest::get(format!("{}/register", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("takes no new accounts"), "the page says so");
}

#[tokio::test]
async fn the_sign_up_page_keeps_the_invitation_and_the_login_lands_in_its_group() {
    let server = Server::start_with(&["--registration", "invite"]);
    let api = server.api();
    assert_eq!(sign_up(&api, "ann", None).await.status, 201);
    let ann = api.log_in("ann").await;
    let group = api.create_group(&ann, "Team", &[]).await;
    let code = invite(&api, &ann, json!({"room_id": group})).await.body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let text_of = |path: String| {
        let request = http.get(format!("{}{path}", server.url)).send();
        async move { request.await.unwrap().text().await.unwrap() }
    };
    let page = text_of(format!("/register?invite={code}")).await;
    assert!(
        page.contains(&format!("name=\"invite\" value=\"{code}\"")),
        "{page}"
    );
    assert!(page.contains("data-testid=\"invited\""));
    let plain = text_of("/register".to_owned()).await;
    assert!(plain.contains("by invitation only"));

    let r = http
        .post(format!("{}/register", server.url))
        .form(&[
            ("username", "bob"),
            ("email", "bob@example.test"),
            ("password", PASSWORD),
            ("invite", &code),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/login");
    let cookies: Vec<String> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let r = http
        .post(format!("{}/login", server.url))
        .header("cookie", cookies.join("; "))
        .form(&[("email", "bob@example.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()[LOCATION].to_str().unwrap(),
        format!("/chat/?rid={group}")
    );
}

#[tokio::test]
async fn a_group_invitation_of_an_owner_who_left_brings_nobody_into_it() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let group = api.create_group(&ann, "Team", &[&bob]).await;
    let code = invite(&api, &ann, json!({"room_id": group})).await.body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let left = api
        .call_as(&ann, "DELETE", &format!("/rooms/{group}/members/me"), None)
        .await;
    assert_eq!(left.status, 204, "ann leaves; bob owns the group now");
    assert_eq!(sign_up(&api, "cyd", Some(&code)).await.status, 201);
    let cyd = api.log_in("cyd").await;
    let chats = api.call_as(&cyd, "GET", "/chats", None).await;
    assert_eq!(chats.body["chats"], json!([]), "made, outside the group");
}
