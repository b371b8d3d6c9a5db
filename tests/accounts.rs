//! A person's own account (docs/protocol.md, "Your account"): the display
//! name and avatar, finding people, blocking, group invitations, the export
//! of one's data and the deletion of the account, over the JSON API and
//! Socket.IO.

mod common;

use std::time::Duration;

use common::{Api, PASSWORD, Server, Socket, TestUser};
use serde_json::{Value, json};

fn picture(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

struct Fetched {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

async fn put_avatar(api: &Api, user: &TestUser, bytes: Vec<u8>) -> Fetched {
    let res = api
        .http
        .put(format!("{}/me/avatar", api.base))
        .bearer_auth(&user.token)
        .body(bytes)
        .send()
        .await
        .unwrap();
    fetched(res).await
}

async fn get(api: &Api, user: &TestUser, path: &str) -> Fetched {
    let url = match path.strip_prefix("/api/v1") {
        Some(rest) => format!("{}{rest}", api.base),
        None => format!("{}{path}", api.base),
    };
    let res = api
        .http
        .get(url)
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    fetched(res).await
}

async fn fetched(res: reqwest::Response) -> Fetched {
    Fetched {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: res.bytes().await.unwrap().to_vec(),
    }
}

/// `owner` adds `user` to group `rid` by their email (an answer, not asserted).
async fn add_by_email(api: &Api, owner: &TestUser, rid: &str, user: &TestUser) -> common::Reply {
    let body = json!({"email": user.email});
    api.call_as(owner, "POST", &format!("/rooms/{rid}/members"), Some(body))
        .await
}

fn member<'a>(chat: &'a Value, username: &str) -> &'a Value {
    chat["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["username"] == username)
        .unwrap_or_else(|| panic!("{username} in {chat}"))
}

#[tokio::test]
async fn a_display_name_and_an_avatar_show_in_the_rooms_of_their_owner() {
    let server = Server::start();
    let api = server.api();
    let [ann, ben] = api.register_each(["ann", "ben"]).await;
    api.open_chat(&ann, &ben).await;
    let [ben_hears] = server.hearing_all([&ben]).await;

    let me = api.call_as(&ann, "GET", "/me/profile", None).await;
    assert_eq!(me.body["display_name"], Value::Null);
    assert_eq!(me.body["username"], "ann");
    assert_eq!(me.body["admin"], true, "the first account");

    let named = api
        .call_as(
            &ann,
            "PATCH",
            "/me/profile",
            Some(json!({"display_name": "  Ann Lee "})),
        )
        .await;
    assert_eq!(named.status, 200, "{:?}", named.body);
    assert_eq!(named.body["display_name"], "Ann Lee");
    // Ben hears of it live, and his list shows it.
    let chat = ben_hears
        .wait_for_match("chat", |c| member(c, "ann")["display_name"] == "Ann Lee")
        .await;
    assert_eq!(member(&chat, "ann")["avatar"], Value::Null);
    let list = api.call_as(&ben, "GET", "/chats", None).await;
    assert_eq!(
        member(&list.body["chats"][0], "ann")["display_name"],
        "Ann Lee"
    );

    // Bad names change nothing.
    for bad in [json!("x".repeat(65)), json!("a\u{202e}b"), json!(7)] {
        let r = api
            .call_as(
                &ann,
                "PATCH",
                "/me/profile",
                Some(json!({"display_name": bad})),
            )
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "{bad}");
    }
    let me = api.call_as(&ann, "GET", "/me/profile", None).await;
    assert_eq!(me.body["display_name"], "Ann Lee");

    // An avatar: kept as a small picture, served to anyone signed in.
    let set = put_avatar(&api, &ann, picture(900, 600)).await;
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    let account: Value = serde_json::from_slice(&set.body).unwrap();
    let url = account["avatar"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("/api/v1/users/{}/avatar?v=", ann.id)),
        "{url}"
    );
    let chat = ben_hears
        .wait_for_match("chat", |c| member(c, "ann")["avatar"] == url.as_str())
        .await;
    assert_eq!(member(&chat, "ann")["display_name"], "Ann Lee");
    let image = get(&api, &ben, &url).await;
    assert_eq!(image.status, 200);
    assert_eq!(image.headers["content-type"], "image/jpeg");
    assert_eq!(image.headers["x-content-type-options"], "nosniff");
    let decoded = image::load_from_memory(&image.body).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (400, 267), "shrunk");

    // Not a picture, or too big: refused, the avatar unchanged.
    let html = put_avatar(&api, &ann, b"<html><script>alert(1)</script>".to_vec()).await;
    assert_eq!(html.status, 422);
    let huge = put_avatar(&api, &ann, vec![0u8; 5 * 1024 * 1024 + 1]).await;
    assert_eq!(huge.status, 413);
    let me = api.call_as(&ann, "GET", "/me/profile", None).await;
    assert_eq!(me.body["avatar"], url.as_str());

    let removed = api.call_as(&ann, "DELETE", "/me/avatar", None).await;
    assert_eq!(removed.body["avatar"], Value::Null);
    let gone = get(&api, &ben, &format!("/api/v1/users/{}/avatar", ann.id)).await;
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn people_are_found_by_name_among_those_i_share_a_room_with_or_in_the_directory() {
    let server = Server::start();
    let api = server.api();
    let [ann, bea, bert, bob] = api.register_each(["ann", "bea", "bert", "bob"]).await;
    api.open_chat(&ann, &bea).await;
    api.call_as(
        &bert,
        "PATCH",
        "/me/profile",
        Some(json!({"display_name": "Bertha"})),
    )
    .await;
    let names = |r: common::Reply| -> Vec<String> {
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    // Bea shares a room with ann; bert and bob are strangers.
    assert_eq!(
        names(api.call_as(&ann, "GET", "/users?q=be", None).await),
        ["bea"]
    );
    // Bert opts into the directory: found by his display name too.
    api.call_as(
        &bert,
        "PATCH",
        "/me/profile",
        Some(json!({"in_directory": true})),
    )
    .await;
    assert_eq!(
        names(api.call_as(&ann, "GET", "/users?q=BERTH", None).await),
        ["bert"]
    );
    assert_eq!(
        names(api.call_as(&ann, "GET", "/users?q=be", None).await),
        ["bea", "bert"]
    );
    // Nobody finds themselves; wildcards are plain characters.
    assert!(names(api.call_as(&bob, "GET", "/users?q=bo", None).await).is_empty());
    assert!(names(api.call_as(&ann, "GET", "/users?q=b%25", None).await).is_empty());
    // Too short or too long: refused.
    for q in ["b", &"b".repeat(65)] {
        let r = api
            .call_as(&ann, "GET", &format!("/users?q={q}"), None)
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "{q}");
    }
    // Someone who blocks me is not found.
    api.call_as(&bert, "PUT", &format!("/blocks/{}", ann.id), None)
        .await;
    assert_eq!(
        names(api.call_as(&ann, "GET", "/users?q=be", None).await),
        ["bea"]
    );
}

#[tokio::test]
async fn a_blocked_person_cannot_reach_the_one_who_blocked_them() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob, cyd] = api.register_each(["ann", "bob", "cyd"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    let bobs = Socket::connect(&server.url, &bob.token).await;
    assert_eq!(bobs.ack("join-chat", json!({"rid": rid})).await["ok"], true);
    bobs.say(&rid, "hi").await;

    let r = api
        .call_as(&ann, "PUT", &format!("/blocks/{}", bob.id), None)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let list = api.call_as(&ann, "GET", "/blocks", None).await;
    assert_eq!(list.body["blocked"][0]["username"], "bob");

    // The direct room is closed both ways, through every door.
    let ack = bobs
        .ack("outgoing", json!({"rid": rid, "message": "are you there?"}))
        .await;
    assert_eq!(ack["error"]["code"], "blocked", "{ack}");
    let posted = api
        .call_as(
            &bob,
            "POST",
            &format!("/rooms/{rid}/messages"),
            Some(json!({"message": "hello?"})),
        )
        .await;
    assert_eq!((posted.status, posted.code()), (403, "blocked"));
    let reopened = api
        .call_as(&bob, "POST", "/chats", Some(json!({"email": ann.email})))
        .await;
    assert_eq!((reopened.status, reopened.code()), (403, "blocked"));
    // No group of bob's may take ann in, nor a new one.
    let group = api.create_group(&bob, "Bob's", &[&cyd]).await;
    let added = add_by_email(&api, &bob, &group, &ann).await;
    assert_eq!((added.status, added.code()), (403, "blocked"));
    let made = api
        .call_as(
            &bob,
            "POST",
            "/groups",
            Some(json!({"title": "Again", "emails": [ann.email]})),
        )
        .await;
    assert_eq!((made.status, made.code()), (403, "blocked"));
    // Blocking myself, or nobody, is refused.
    let me = api
        .call_as(&ann, "PUT", &format!("/blocks/{}", ann.id), None)
        .await;
    assert_eq!(me.status, 422);
    let nobody = api.call_as(&ann, "PUT", "/blocks/999999", None).await;
    assert_eq!(nobody.status, 404);
    // Nothing bob tried reached the room.
    let history = api.history(&ann, &rid, "").await;
    assert_eq!(history.len(), 1, "{history:?}");

    // Unblocked: the room is open again.
    let r = api
        .call_as(&ann, "DELETE", &format!("/blocks/{}", bob.id), None)
        .await;
    assert_eq!(r.status, 204);
    bobs.say(&rid, "hello again").await;
}

#[tokio::test]
async fn with_consent_a_stranger_is_asked_to_join_a_group_and_a_no_is_remembered() {
    let server = Server::start_with(&["--group-adds", "consent"]);
    let api = server.api();
    let [ann, ben, eve] = api.register_each(["ann", "ben", "eve"]).await;
    api.open_chat(&ann, &ben).await;
    // Ben shares a room with ann: he is in at once; eve is asked.
    let made = api
        .call_as(
            &ann,
            "POST",
            "/groups",
            Some(json!({"title": "Club", "emails": [ben.email, eve.email]})),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let rid = made.body["room_id"].as_str().unwrap().to_owned();
    let names: Vec<&str> = made.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "ben"]);

    let pending = api.call_as(&eve, "GET", "/group-invitations", None).await;
    let invitation = &pending.body["invitations"][0];
    assert_eq!(invitation["room_id"], rid.as_str());
    assert_eq!(invitation["title"], "Club");
    assert_eq!(invitation["invited_by_username"], "ann");
    // Not a member yet: the room is closed to her.
    let history = api
        .call_as(&eve, "GET", &format!("/rooms/{rid}/messages"), None)
        .await;
    assert_eq!(history.code(), "not_member");

    let declined = api
        .call_as(
            &eve,
            "POST",
            &format!("/group-invitations/{rid}/decline"),
            None,
        )
        .await;
    assert_eq!(declined.status, 204);
    let again = add_by_email(&api, &ann, &rid, &eve).await;
    assert_eq!((again.status, again.code()), (403, "declined"));
    let accepted = api
        .call_as(
            &eve,
            "POST",
            &format!("/group-invitations/{rid}/accept"),
            None,
        )
        .await;
    assert_eq!((accepted.status, accepted.code()), (404, "not_found"));

    // Ben leaves; adding him back asks him, and he says yes.
    api.remove_member(&ben, &rid, &ben).await;
    let readd = add_by_email(&api, &ann, &rid, &ben).await;
    assert_eq!(
        (readd.status, readd.body.clone()),
        (202, json!({"invited": true}))
    );
    // Asking again while he has not answered is no error.
    let twice = add_by_email(&api, &ann, &rid, &ben).await;
    assert_eq!(twice.status, 202);
    let joined = api
        .call_as(
            &ben,
            "POST",
            &format!("/group-invitations/{rid}/accept"),
            None,
        )
        .await;
    assert_eq!(joined.status, 200, "{:?}", joined.body);
    assert_eq!(joined.body["room_id"], rid.as_str());
    assert_eq!(
        joined.body["last_message"]["message"],
        "ben joined, invited by ann"
    );
    let none = api.call_as(&ben, "GET", "/group-invitations", None).await;
    assert_eq!(none.body["invitations"], json!([]));
}

#[tokio::test]
async fn without_consent_a_person_who_left_a_group_is_still_asked_before_coming_back() {
    let server = Server::start();
    let api = server.api();
    let [ann, ben] = api.register_each(["ann", "ben"]).await;
    let rid = api.create_group(&ann, "Club", &[&ben]).await;
    let [ben_hears] = server.hearing_all([&ben]).await;
    api.remove_member(&ben, &rid, &ben).await;
    // Socket.IO's add-member answers the same way.
    let anns = Socket::connect(&server.url, &ann.token).await;
    let ack = anns
        .ack("add-member", json!({"rid": rid, "email": ben.email}))
        .await;
    assert_eq!(
        (ack["ok"].clone(), ack["invited"].clone()),
        (json!(true), json!(true))
    );
    assert!(
        ben_hears
            .received("chat")
            .iter()
            .all(|c| c["room_id"] != rid.as_str() || c["members"].as_array().unwrap().len() == 1),
        "ben is not back in"
    );
    let pending = api.call_as(&ben, "GET", "/group-invitations", None).await;
    assert_eq!(pending.body["invitations"][0]["room_id"], rid.as_str());
}

async fn send(api: &Api, user: &TestUser, rid: &str, text: &str) {
    let r = api
        .call_as(
            user,
            "POST",
            &format!("/rooms/{rid}/messages"),
            Some(json!({"message": text})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn my_export_holds_my_account_my_messages_and_my_files() {
    let server = Server::start();
    let api = server.api();
    let [ann, ben] = api.register_each(["ann", "ben"]).await;
    let rid = api.open_chat(&ann, &ben).await;
    send(&api, &ann, &rid, "one").await;
    send(&api, &ben, &rid, "not mine").await;
    let upload = api
        .http
        .post(format!("{}/rooms/{rid}/attachments?name=cat.png", api.base))
        .bearer_auth(&ann.token)
        .body(picture(20, 10))
        .send()
        .await
        .unwrap();
    let attachment: Value = upload.json().await.unwrap();
    let with_file = api
        .call_as(
            &ann,
            "POST",
            &format!("/rooms/{rid}/messages"),
            Some(json!({"message": "two", "attachments": [attachment["id"]]})),
        )
        .await;
    assert_eq!(with_file.status, 201, "{:?}", with_file.body);
    api.call_as(&ann, "PUT", &format!("/blocks/{}", ben.id), None)
        .await;

    let export = get(&api, &ann, "/me/export").await;
    assert_eq!(export.status, 200);
    assert!(
        export.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
    );
    let export: Value = serde_json::from_slice(&export.body).unwrap();
    assert_eq!(export["account"]["email"], ann.email.as_str());
    let texts: Vec<&str> = export["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two"], "mine only");
    assert_eq!(export["messages_truncated"], false);
    assert_eq!(export["chats"][0]["room_id"], rid.as_str());
    assert_eq!(export["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(export["blocked"][0]["username"], "ben");
    let file = &export["files"][0];
    assert_eq!(file["name"], "cat.png");
    let bytes = get(&api, &ann, file["url"].as_str().unwrap()).await;
    assert_eq!(bytes.status, 200, "the file is fetched by its url");

    // The same with the files inside: one ZIP download.
    let zipped = get(&api, &ann, "/me/export?files=zip").await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.headers["content-type"], "application/zip");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped.body)).unwrap();
    let mut entry = |name: &str| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut archive.by_name(name).unwrap(), &mut out).unwrap();
        out
    };
    let inside: Value = serde_json::from_slice(&entry("export.json")).unwrap();
    assert_eq!(inside["messages"], export["messages"]);
    let name = format!("files/{}-cat.png", file["id"].as_str().unwrap());
    assert_eq!(entry(&name), bytes.body, "the very file");
    let bad = get(&api, &ann, "/me/export?files=tar").await;
    assert_eq!(bad.status, 422);
}

async fn delete_me(api: &Api, user: &TestUser, password: &str) -> common::Reply {
    api.call_as(user, "DELETE", "/me", Some(json!({"password": password})))
        .await
}

#[tokio::test]
async fn a_deleted_account_leaves_its_groups_and_its_messages_stay_as_a_deleted_users() {
    let server = Server::start();
    let api = server.api();
    let [ann, ben, cyd] = api.register_each(["ann", "ben", "cyd"]).await;
    let direct = api.open_chat(&ann, &ben).await;
    let group = api.create_group(&ben, "Club", &[&ann, &cyd]).await;
    send(&api, &ben, &direct, "hello ann").await;
    send(&api, &ben, &group, "hello club").await;
    let bens = Socket::connect(&server.url, &ben.token).await;
    // A bot of ben's, with a token.
    let bot = api
        .call_as(&ben, "POST", "/bots", Some(json!({"username": "benbot"})))
        .await;
    let bot_id = bot.body["id"].as_str().unwrap().to_owned();
    let token = api
        .call_as(
            &ben,
            "POST",
            &format!("/bots/{bot_id}/tokens"),
            Some(json!({"scopes": ["read"]})),
        )
        .await;
    let bot_token = token.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        api.call("GET", "/chats", None, Some(&bot_token))
            .await
            .status,
        200
    );

    // The password is asked for; a wrong one changes nothing.
    let wrong = delete_me(&api, &ben, "not my password").await;
    assert_eq!((wrong.status, wrong.code()), (422, "invalid"));
    assert_eq!(api.call_as(&ben, "GET", "/me", None).await.status, 200);

    assert_eq!(delete_me(&api, &ben, PASSWORD).await.status, 204);
    // Every session ends, its sockets with it; the email logs nobody in.
    assert_eq!(api.call_as(&ben, "GET", "/me", None).await.status, 401);
    assert!(bens.closed_within(Duration::from_secs(3)).await);
    let login = api.try_log_in(&ben.email, PASSWORD).await;
    assert_eq!(login.status, 401);
    // His bot goes quiet with him.
    assert_eq!(
        api.call("GET", "/chats", None, Some(&bot_token))
            .await
            .status,
        401
    );

    // The group: ben left it, said so; its ownership passed on.
    let club = api.history(&cyd, &group, "").await;
    let last = club.last().unwrap();
    assert_eq!(last["message"], format!("{} deleted their account", "ben"));
    assert_eq!(club[club.len() - 2]["message"], "hello club", "kept");
    let members = api
        .call_as(&cyd, "GET", &format!("/rooms/{group}/members"), None)
        .await;
    assert_eq!(members.body["members"].as_array().unwrap().len(), 2);
    // The direct room stays with ann, ben's messages under a deleted user's name.
    let history = api.history(&ann, &direct, "").await;
    assert_eq!(history[0]["message"], "hello ann");
    let deleted_name = format!("deleted user #{}", ben.id);
    assert_eq!(history[0]["sender_username"], deleted_name.as_str());
    let chats = api.call_as(&ann, "GET", "/chats", None).await;
    let titles: Vec<&str> = chats.body["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert!(titles.contains(&deleted_name.as_str()), "{titles:?}");
    // The email is free again.
    let again = api
        .call(
            "POST",
            "/users",
            Some(json!({"username": "ben2", "email": ben.email, "password": PASSWORD})),
            None,
        )
        .await;
    assert_eq!(again.status, 201, "{:?}", again.body);
}

#[tokio::test]
async fn with_remove_a_deleted_accounts_messages_are_deleted_too() {
    let server = Server::start_with(&["--deleted-account-messages", "remove"]);
    let api = server.api();
    let [ann, ben] = api.register_each(["ann", "ben"]).await;
    let direct = api.open_chat(&ann, &ben).await;
    send(&api, &ben, &direct, "secret").await;
    send(&api, &ann, &direct, "mine stays").await;
    assert_eq!(delete_me(&api, &ben, PASSWORD).await.status, 204);
    let history = api.history(&ann, &direct, "").await;
    assert_eq!(history[0]["deleted"], true);
    assert_eq!(history[0]["message"], "");
    assert_eq!(history[1]["message"], "mine stays");
    // Clients that catch up by revision hear of the deletion.
    let changes = api
        .call_as(
            &ann,
            "GET",
            &format!("/rooms/{direct}/changes?after_rev=0"),
            None,
        )
        .await;
    assert_eq!(changes.status, 200, "{:?}", changes.body);
    assert!(
        changes.body.to_string().contains("\"deleted\":true"),
        "{:?}",
        changes.body
    );
}

#[tokio::test]
async fn finding_people_in_a_loop_runs_out_of_its_budget() {
    let server = Server::start_with(&["--lookups-per-hour", "5"]);
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    api.open_chat(&ann, &bob).await;
    // The chat above took one lookup: four searches answer, the fifth is refused.
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(api.call_as(&ann, "GET", "/users?q=bo", None).await.status);
    }
    assert_eq!(answers, [200, 200, 200, 200, 429, 429]);
    // Someone else's budget is their own.
    assert_eq!(
        api.call_as(&bob, "GET", "/users?q=an", None).await.status,
        200
    );
}
