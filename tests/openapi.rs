//! The OpenAPI document (`GET /api/v1/openapi.json`, docs/protocol.md "The
//! OpenAPI document"): it names every route the server answers under
//! `/api/v1` and no other, real answers of every call validate against its
//! schemas, and a standard validator (Python's `openapi-spec-validator`)
//! accepts it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::smtp::SmtpServer;
use common::{Api, PASSWORD, Reply, Server, TestUser};
use serde_json::{Value, json};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The document as served, with what the tests need of it.
struct Document {
    json: Value,
    /// Every response schema's `$ref`s resolve against these; each object
    /// here is closed (`additionalProperties: false`), so a field the
    /// server sends but the document does not name fails validation.
    closed_components: Value,
    /// `(method, path)` of each operation a real answer was checked for.
    exercised: BTreeSet<(String, String)>,
}

impl Document {
    async fn fetch(server: &Server) -> Document {
        let res = reqwest::get(format!("{}/api/v1/openapi.json", server.url))
            .await
            .expect("fetch the document");
        assert_eq!(res.status(), 200);
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(header("content-type").as_deref(), Some("application/json"));
        let cache = header("cache-control").unwrap_or_default();
        assert!(cache.contains("max-age"), "cacheable: {cache}");
        let json: Value = res.json().await.expect("JSON");
        let mut closed_components = json["components"].clone();
        close_objects(&mut closed_components);
        Document {
            json,
            closed_components,
            exercised: BTreeSet::new(),
        }
    }

    /// `(method, path)` of every operation, paths as the document has them.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.json["paths"].as_object().expect("paths") {
            for method in METHODS {
                if item.get(method).is_some() {
                    all.insert((method.to_owned(), path.clone()));
                }
            }
        }
        all
    }

    /// Checks `reply`, the answer to `method path` (`path` the document's
    /// template, e.g. `/api/v1/rooms/{rid}/messages`), against the response
    /// the document gives for its status (or its `default`).
    fn check(&mut self, method: &str, path: &str, reply: &Reply) {
        let operation = &self.json["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let responses = &operation["responses"];
        let status = reply.status.to_string();
        let response = responses
            .get(&status)
            .or_else(|| responses.get("default"))
            .unwrap_or_else(|| panic!("{method} {path}: no response for {status}"));
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            assert_eq!(
                reply.body,
                Value::Null,
                "{method} {path} {status}: documented without a body"
            );
        } else {
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": self.closed_components,
                "allOf": [schema],
            });
            let validator = jsonschema::validator_for(&root)
                .unwrap_or_else(|e| panic!("{method} {path} {status}: bad schema: {e}"));
            let errors: Vec<String> = validator
                .iter_errors(&reply.body)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{method} {path} {status}: {:#}\ndoes not match the document: {errors:#?}",
                reply.body
            );
        }
        if reply.status < 300 {
            self.exercised.insert((method.to_owned(), path.to_owned()));
        }
    }
}

/// Sets `additionalProperties: false` on every object schema that lists
/// its properties and says nothing of others.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// A call whose answer is checked against the document.
struct Caller<'a> {
    api: &'a Api,
    doc: Document,
}

impl Caller<'_> {
    /// Calls `method url` (under `/api/v1`) as `user` with `body`, checks the
    /// answer against `template`'s operation, and returns it.
    async fn call(
        &mut self,
        user: Option<&TestUser>,
        method: &str,
        template: &str,
        url: &str,
        body: Option<Value>,
    ) -> Reply {
        let token = user.map(|u| u.token.as_str());
        let reply = self
            .api
            .call(&method.to_uppercase(), url, body, token)
            .await;
        self.doc
            .check(method, &format!("/api/v1{template}"), &reply);
        reply
    }

    /// Like [`Caller::call`], expecting `status`.
    async fn ok(
        &mut self,
        user: Option<&TestUser>,
        method: &str,
        template: &str,
        url: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let reply = self.call(user, method, template, url, body).await;
        assert_eq!(reply.status, status, "{method} {url}: {:?}", reply.body);
        reply.body
    }

    /// Uploads `bytes` as `name` into `rid`.
    async fn upload(&mut self, user: &TestUser, rid: &str, name: &str, bytes: Vec<u8>) -> Value {
        let res = self
            .api
            .http
            .post(format!("{}/rooms/{rid}/attachments", self.api.base))
            .query(&[("name", name)])
            .bearer_auth(&user.token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        let status = res.status().as_u16();
        let body = res.json().await.expect("JSON");
        let reply = Reply { status, body };
        self.doc
            .check("post", "/api/v1/rooms/{rid}/attachments", &reply);
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        reply.body
    }

    /// Fetches a file; its body is the file, so only its status is checked.
    async fn fetch_file(&mut self, user: &TestUser, template: &str, url: &str) {
        let res = self
            .api
            .http
            .get(format!("{}{url}", self.api.base))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("fetch");
        assert_eq!(res.status(), 200, "{url}");
        let path = format!("/api/v1{template}");
        let documented = &self.doc.json["paths"][&path]["get"]["responses"]["200"];
        assert!(documented.is_object(), "GET {path} 200 is documented");
        self.doc.exercised.insert(("get".into(), path));
    }
}

/// A small PNG, so that the attachment has a size and a thumbnail.
fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 8, |x, y| image::Rgb([x as u8 * 9, y as u8 * 20, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A browser's push subscription to a loopback endpoint (the server runs
/// with `--push-allow-http`, so nothing leaves this machine).
fn push_subscription() -> Value {
    use base64::Engine as _;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let public = secret.public_key().to_encoded_point(false);
    json!({
        "endpoint": "http://127.0.0.1:9/push/openapi-test",
        "keys": {"p256dh": b64.encode(public.as_bytes()), "auth": b64.encode([3u8; 16])},
    })
}

#[tokio::test]
async fn real_answers_of_every_call_match_the_document() {
    // Pushes, outgoing webhooks and reset mails go to loopback servers only.
    let smtp = SmtpServer::start().await;
    let smtp_url = smtp.url();
    let server = Server::start_with(&[
        "--push-allow-http",
        "--webhook-allow-private",
        "--smtp-url",
        &smtp_url,
        "--smtp-from",
        "natter@example.test",
        "--public-url",
        "https://chat.example.test",
    ]);
    let api = server.api();
    let doc = Document::fetch(&server).await;
    let mut c = Caller { api: &api, doc };

    // Users and sessions.
    for name in ["ann", "bob", "cyd", "dee"] {
        let body = json!({"username": name, "email": format!("{name}@example.test"), "password": PASSWORD});
        c.ok(None, "post", "/users", "/users", Some(body), 201)
            .await;
    }
    let login = json!({"email": "ann@example.test", "password": PASSWORD});
    let session = c
        .ok(None, "post", "/sessions", "/sessions", Some(login), 201)
        .await;
    let ann = TestUser {
        id: session["user"]["id"].as_str().unwrap().to_owned(),
        username: "ann".into(),
        email: "ann@example.test".into(),
        token: session["token"].as_str().unwrap().to_owned(),
    };
    let bob = api.log_in("bob").await;
    let cyd = api.log_in("cyd").await;
    let dee = api.log_in("dee").await;
    let a = Some(&ann);
    c.ok(a, "get", "/me", "/me", None, 200).await;

    // A direct chat, new then found again, and the list.
    let contact = json!({"email": bob.email});
    let chat = c
        .ok(a, "post", "/chats", "/chats", Some(contact.clone()), 201)
        .await;
    c.ok(a, "post", "/chats", "/chats", Some(contact), 200)
        .await;
    let rid = chat["room_id"].as_str().unwrap().to_owned();

    // Messages: plain, then a reply with attachments (a picture and a file).
    let messages = format!("/rooms/{rid}/messages");
    let m = "/rooms/{rid}/messages";
    let first = json!({"message": "hello there", "client_id": "c-1"});
    c.ok(a, "post", m, &messages, Some(first), 201).await;
    let picture = c.upload(&ann, &rid, "dot.png", png()).await;
    assert!(picture["thumbnail_url"].is_string(), "{picture}");
    let file = c
        .upload(&ann, &rid, "notes.txt", b"plain words".to_vec())
        .await;
    assert!(file["width"].is_null(), "{file}");
    let reply =
        json!({"message": "with files", "reply_to": 1, "attachments": [picture["id"], file["id"]]});
    let sent = c.ok(a, "post", m, &messages, Some(reply), 201).await;
    assert!(sent["reply_to"].is_object(), "{sent}");
    let picture_url = format!("/attachments/{}", picture["id"].as_str().unwrap());
    c.fetch_file(&ann, "/attachments/{id}", &picture_url).await;
    let thumbnail = format!("{picture_url}/thumbnail");
    c.fetch_file(&ann, "/attachments/{id}/thumbnail", &thumbnail)
        .await;

    let one = format!("{messages}/1");
    let m1 = "/rooms/{rid}/messages/{seq}";
    let b = Some(&bob);
    let reactions = format!("{one}/reactions");
    let emoji = json!({"emoji": "👍"});
    c.ok(
        b,
        "post",
        "/rooms/{rid}/messages/{seq}/reactions",
        &reactions,
        Some(emoji),
        200,
    )
    .await;
    let edit = json!({"message": "hello, edited"});
    let edited = c.ok(a, "patch", m1, &one, Some(edit), 200).await;
    assert!(edited["edited_at"].is_number(), "{edited}");
    c.ok(a, "get", m, &messages, None, 200).await;
    c.ok(
        a,
        "get",
        m,
        &format!("{messages}?limit=1&before=3"),
        None,
        200,
    )
    .await;
    let changes = format!("/rooms/{rid}/changes?after_rev=0");
    c.ok(a, "get", "/rooms/{rid}/changes", &changes, None, 200)
        .await;
    let read = format!("/rooms/{rid}/read");
    c.ok(
        b,
        "post",
        "/rooms/{rid}/read",
        &read,
        Some(json!({"seq": 2})),
        200,
    )
    .await;
    let typing = format!("/rooms/{rid}/typing");
    let t = json!({"typing": true});
    c.ok(b, "post", "/rooms/{rid}/typing", &typing, Some(t), 204)
        .await;
    let notify = format!("/rooms/{rid}/notify");
    let level = json!({"notify": "none"});
    c.ok(b, "put", "/rooms/{rid}/notify", &notify, Some(level), 200)
        .await;
    let search = "/search?q=hello";
    let found = c.ok(a, "get", "/search", search, None, 200).await;
    assert_eq!(
        found["messages"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );

    // A group: made, listed, grown, renamed, shrunk.
    let group = json!({"title": "Trip", "emails": [bob.email]});
    let made = c
        .ok(a, "post", "/groups", "/groups", Some(group), 201)
        .await;
    let gid = made["room_id"].as_str().unwrap().to_owned();
    let members = format!("/rooms/{gid}/members");
    let mt = "/rooms/{rid}/members";
    c.ok(a, "get", mt, &members, None, 200).await;
    let add = json!({"email": cyd.email});
    c.ok(a, "post", mt, &members, Some(add.clone()), 200).await;
    let title = json!({"title": "Trip 2"});
    let rename = format!("/rooms/{gid}");
    c.ok(b, "patch", "/rooms/{rid}", &rename, Some(title), 200)
        .await;
    // Who left is asked on a re-add: cyd accepts, bob declines.
    let leave = format!("{members}/me");
    let member = "/rooms/{rid}/members/{user_id}";
    let y = Some(&cyd);
    c.ok(y, "delete", member, &leave, None, 204).await;
    c.ok(b, "delete", member, &leave, None, 204).await;
    let asked = c.ok(a, "post", mt, &members, Some(add), 202).await;
    assert_eq!(asked, json!({"invited": true}));
    let add_bob = json!({"email": bob.email});
    c.ok(a, "post", mt, &members, Some(add_bob), 202).await;
    let pending = c
        .ok(
            y,
            "get",
            "/group-invitations",
            "/group-invitations",
            None,
            200,
        )
        .await;
    assert_eq!(pending["invitations"][0]["room_id"], gid, "{pending}");
    let answer = |verb: &str| format!("/group-invitations/{gid}/{verb}");
    let accept = "/group-invitations/{rid}/accept";
    c.ok(y, "post", accept, &answer("accept"), None, 200).await;
    let decline = "/group-invitations/{rid}/decline";
    c.ok(b, "post", decline, &answer("decline"), None, 204)
        .await;
    let cyd_member = format!("{members}/{}", cyd.id);
    c.ok(
        a,
        "delete",
        "/rooms/{rid}/members/{user_id}",
        &cyd_member,
        None,
        204,
    )
    .await;
    // The whole list and a page of it (now with a group and a last message each).
    c.ok(a, "get", "/chats", "/chats", None, 200).await;
    let page = c.ok(a, "get", "/chats", "/chats?limit=1", None, 200).await;
    assert!(page["next_before"].is_string(), "{page}");

    // Invitations (ann, the first account, is the admin).
    let plain = c
        .ok(a, "post", "/invites", "/invites", Some(json!({})), 201)
        .await;
    let into_group = json!({"room_id": gid, "max_uses": 3, "expires_in_secs": 600});
    c.ok(a, "post", "/invites", "/invites", Some(into_group), 201)
        .await;
    c.ok(a, "get", "/invites", "/invites", None, 200).await;
    let revoke = format!("/invites/{}", plain["code"].as_str().unwrap());
    c.ok(a, "delete", "/invites/{code}", &revoke, None, 204)
        .await;

    // Web Push.
    c.ok(a, "get", "/push/key", "/push/key", None, 200).await;
    let subscriptions = "/push/subscriptions";
    let subscription = push_subscription();
    let made = c
        .ok(
            a,
            "post",
            subscriptions,
            subscriptions,
            Some(subscription.clone()),
            201,
        )
        .await;
    c.ok(
        a,
        "post",
        subscriptions,
        subscriptions,
        Some(subscription),
        200,
    )
    .await;
    c.ok(a, "get", subscriptions, subscriptions, None, 200)
        .await;
    let one_subscription = format!("{subscriptions}/{}", made["id"].as_str().unwrap());
    c.ok(
        a,
        "delete",
        "/push/subscriptions/{id}",
        &one_subscription,
        None,
        204,
    )
    .await;

    // Blocks.
    let block = format!("/blocks/{}", cyd.id);
    c.ok(a, "put", "/blocks/{user_id}", &block, None, 204).await;
    let blocked = c.ok(a, "get", "/blocks", "/blocks", None, 200).await;
    assert_eq!(blocked["blocked"][0]["id"], cyd.id.as_str(), "{blocked}");
    c.ok(a, "delete", "/blocks/{user_id}", &block, None, 204)
        .await;

    // My profile, avatar, export; finding people.
    c.ok(a, "get", "/me/profile", "/me/profile", None, 200)
        .await;
    let profile = json!({"display_name": "Ann A.", "in_directory": true});
    c.ok(a, "patch", "/me/profile", "/me/profile", Some(profile), 200)
        .await;
    let res = api
        .http
        .put(format!("{}/me/avatar", api.base))
        .bearer_auth(&ann.token)
        .header("content-type", "application/octet-stream")
        .body(png())
        .send()
        .await
        .expect("avatar");
    let status = res.status().as_u16();
    let reply = Reply {
        status,
        body: res.json().await.expect("JSON"),
    };
    c.doc.check("put", "/api/v1/me/avatar", &reply);
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let avatar = reply.body["avatar"].as_str().expect("an avatar URL");
    let avatar = avatar.strip_prefix("/api/v1").expect("under the API");
    c.fetch_file(&bob, "/users/{id}/avatar", avatar).await;
    c.ok(a, "delete", "/me/avatar", "/me/avatar", None, 200)
        .await;
    let export = c.ok(a, "get", "/me/export", "/me/export", None, 200).await;
    assert!(
        !export["messages"].as_array().unwrap().is_empty(),
        "{export}"
    );
    let found = c.ok(b, "get", "/users", "/users?q=an", None, 200).await;
    assert_eq!(found["users"][0]["username"], "ann", "{found}");

    // Administration (ann, the first account, is the admin).
    c.ok(a, "get", "/admin/users", "/admin/users", None, 200)
        .await;
    let page = "/admin/users?q=b&limit=1";
    c.ok(a, "get", "/admin/users", page, None, 200).await;
    let dee_account = format!("/admin/users/{}", dee.id);
    let enable = json!({"disabled": false});
    let au = "/admin/users/{id}";
    c.ok(a, "patch", au, &dee_account, Some(enable), 200).await;
    c.ok(a, "get", "/admin/stats", "/admin/stats", None, 200)
        .await;
    let settings = "/admin/settings";
    c.ok(a, "get", settings, settings, None, 200).await;
    let who = json!({"registration": "open", "members_may_invite": true});
    c.ok(a, "put", settings, settings, Some(who), 200).await;
    let back = json!({"registration": null});
    c.ok(a, "put", settings, settings, Some(back), 200).await;
    let moderated = format!("/admin/rooms/{rid}/messages/2");
    let am = "/admin/rooms/{rid}/messages/{seq}";
    let record = c.ok(a, "delete", am, &moderated, None, 200).await;
    assert_eq!(record["message"]["kind"], "system", "{record}");

    // Bots and their tokens.
    let bot = json!({"username": "helper"});
    let bot = c.ok(a, "post", "/bots", "/bots", Some(bot), 201).await;
    c.ok(a, "get", "/bots", "/bots", None, 200).await;
    let tokens = format!("/bots/{}/tokens", bot["id"].as_str().unwrap());
    let bt = "/bots/{id}/tokens";
    let scopes = json!({"scopes": ["read", "send"], "rooms": [gid]});
    let token = c.ok(a, "post", bt, &tokens, Some(scopes), 201).await;
    let secret = token["token"].as_str().unwrap();
    assert!(secret.starts_with("nbt_"), "{token}");
    let read_only = json!({"scopes": ["read"]});
    let reader = c.ok(a, "post", bt, &tokens, Some(read_only), 201).await;
    // A bot's token is a bearer token too (the `bearer` scheme).
    let helper = TestUser {
        id: bot["id"].as_str().unwrap().to_owned(),
        username: "helper".into(),
        email: bot["email"].as_str().unwrap().to_owned(),
        token: reader["token"].as_str().unwrap().to_owned(),
    };
    let bot_chats = c
        .ok(Some(&helper), "get", "/chats", "/chats", None, 200)
        .await;
    assert_eq!(bot_chats["chats"], json!([]), "{bot_chats}");
    c.ok(a, "get", bt, &tokens, None, 200).await;
    let revoke = format!("{tokens}/{}", token["id"].as_str().unwrap());
    c.ok(a, "delete", "/bots/{id}/tokens/{token}", &revoke, None, 204)
        .await;

    // Webhooks: an incoming one into the group, an outgoing one of ann's bot.
    let hooks = format!("/rooms/{gid}/webhooks");
    let ht = "/rooms/{rid}/webhooks";
    let named = json!({"name": "deploys"});
    let hook = c.ok(a, "post", ht, &hooks, Some(named), 201).await;
    assert!(
        hook["url"].as_str().unwrap().starts_with("/hooks/"),
        "{hook}"
    );
    c.ok(a, "get", ht, &hooks, None, 200).await;
    let one_hook = format!("{hooks}/{}", hook["id"].as_str().unwrap());
    let hd = "/rooms/{rid}/webhooks/{id}";
    c.ok(a, "delete", hd, &one_hook, None, 204).await;
    let out = json!({
        "url": "http://127.0.0.1:9/openapi-test",
        "events": ["message", "mention"],
        "rooms": [gid],
        "bot_id": bot["id"],
    });
    let out = c
        .ok(a, "post", "/webhooks", "/webhooks", Some(out), 201)
        .await;
    assert!(out["secret"].is_string(), "{out}");
    let mine = json!({"url": "http://127.0.0.1:9/mine", "events": ["mention"]});
    c.ok(a, "post", "/webhooks", "/webhooks", Some(mine), 201)
        .await;
    c.ok(a, "get", "/webhooks", "/webhooks", None, 200).await;
    let out = format!("/webhooks/{}", out["id"].as_str().unwrap());
    c.ok(a, "delete", "/webhooks/{id}", &out, None, 204).await;
    let bot = format!("/bots/{}", bot["id"].as_str().unwrap());
    c.ok(a, "delete", "/bots/{id}", &bot, None, 204).await;

    // A password reset by mail, then dee deletes her account.
    let ask = json!({"email": dee.email});
    c.ok(
        None,
        "post",
        "/password-resets",
        "/password-resets",
        Some(ask),
        202,
    )
    .await;
    let mail = smtp.wait_for(1).await.remove(0).data.replace("=\r\n", "");
    let link = "https://chat.example.test/reset/";
    let at = mail.find(link).expect("a reset link") + link.len();
    let reset_token: String = mail[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let reset = format!("/password-resets/{reset_token}");
    let new_password = json!({"password": "a brand new secret"});
    let pr = "/password-resets/{token}";
    c.ok(None, "post", pr, &reset, Some(new_password), 204)
        .await;
    let login = json!({"email": dee.email, "password": "a brand new secret"});
    let dee_session = c
        .ok(None, "post", "/sessions", "/sessions", Some(login), 201)
        .await;
    let dee = TestUser {
        token: dee_session["token"].as_str().unwrap().to_owned(),
        ..dee
    };
    let gone = json!({"password": "a brand new secret"});
    c.ok(Some(&dee), "delete", "/me", "/me", Some(gone), 204)
        .await;

    // Deleting a message, sessions, the password, logging out.
    c.ok(a, "delete", m1, &one, None, 200).await;
    api.new_session(&ann).await;
    let sessions = c.ok(a, "get", "/sessions", "/sessions", None, 200).await;
    let other_id = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .expect("the other session")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let end = format!("/sessions/{other_id}");
    c.ok(a, "delete", "/sessions/{id}", &end, None, 204).await;
    let change = json!({"current_password": PASSWORD, "new_password": "another long secret"});
    c.ok(a, "put", "/me/password", "/me/password", Some(change), 204)
        .await;
    c.ok(
        a,
        "delete",
        "/sessions/current",
        "/sessions/current",
        None,
        204,
    )
    .await;

    // One error of each kind, in the error body.
    let unauthorized = c.call(a, "get", "/me", "/me", None).await;
    assert_eq!(unauthorized.code(), "unauthorized");
    let b_history = "/rooms/no-such-room/messages";
    let missing = c.call(b, "get", m, b_history, None).await;
    assert_eq!((missing.status, missing.code()), (404, "no_such_room"));
    let own = json!({"email": bob.email});
    let refused = c.call(b, "post", "/chats", "/chats", Some(own)).await;
    assert_eq!((refused.status, refused.code()), (422, "self"));
    let bad_json = api
        .http
        .post(format!("{}/chats", api.base))
        .bearer_auth(&bob.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = bad_json.status().as_u16();
    let reply = Reply {
        status,
        body: bad_json.json().await.unwrap(),
    };
    assert_eq!((reply.status, reply.code()), (400, "invalid"));
    c.doc.check("post", "/api/v1/chats", &reply);

    // The document's own route, and then: was every call exercised?
    let served = api.call("GET", "/openapi.json", None, None).await;
    c.doc.check("get", "/api/v1/openapi.json", &served);
    let missed: Vec<_> = c
        .doc
        .operations()
        .difference(&c.doc.exercised)
        .cloned()
        .collect();
    assert!(
        missed.is_empty(),
        "calls this test does not exercise yet (add one with valid input): {missed:?}"
    );
}

/// `(method, path)` of each `.route("PATH", get(..).post(..))` in a source
/// text: routes registered without a description.
fn plain_routes(source: &str) -> Vec<(String, String)> {
    let call =
        regex::Regex::new(r#"\.route\(\s*"([^"]+)"\s*,([^;]*?)\)\s*(?:\n\s*\.|;|\n\s*//|$)"#)
            .unwrap();
    let method = regex::Regex::new(r"\b(get|post|put|patch|delete)\(").unwrap();
    let mut found = Vec::new();
    for route in call.captures_iter(source) {
        for m in method.captures_iter(&route[2]) {
            found.push((m[1].to_owned(), route[1].to_owned()));
        }
    }
    found
}

#[test]
fn plain_routes_are_found_in_source() {
    let source = r#"
        Router::new()
            .route("/a", get(list).post(create))
            // a comment
            .route(
                "/a/{id}",
                patch(edit).delete(remove),
            )
            .routes(routes!(other))
    "#;
    assert_eq!(
        plain_routes(source),
        [
            ("get".to_owned(), "/a".to_owned()),
            ("post".into(), "/a".into()),
            ("patch".into(), "/a/{id}".into()),
            ("delete".into(), "/a/{id}".into()),
        ]
    );
}

/// Every route the API serves is described: the API modules register
/// theirs through the document (`routes!`), and any plain `.route(...)`
/// in them must be in it too; every documented call is answered (not the
/// API's "no such route" nor 405), and every other method of a documented
/// path is 405.
#[tokio::test]
async fn the_document_names_every_route_and_only_those() {
    let server = Server::start();
    let doc = Document::fetch(&server).await;
    let documented = doc.operations();
    assert!(documented.len() > 30, "{documented:?}");

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/api");
    let mut undocumented = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for (method, route) in plain_routes(&source) {
            if !documented.contains(&(method.clone(), format!("/api/v1{route}"))) {
                undocumented.push(format!("{method} {route} ({})", path.display()));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document (see src/http/api/openapi.rs): {undocumented:?}"
    );

    let http = reqwest::Client::new();
    let parameter = regex::Regex::new(r"\{[^}]+\}").unwrap();
    let mut by_path: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (method, path) in &documented {
        by_path.entry(path).or_default().insert(method);
    }
    for (path, methods) in by_path {
        assert!(path.starts_with("/api/v1/"), "{path}");
        // Any value fits a parameter: the route is matched before it is read.
        let url = parameter.replace_all(path, "x");
        for method in METHODS {
            let res = http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{url}", server.url),
                )
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            if methods.contains(method) {
                let no_route = status == 404 && body["error"]["message"] == "no such route";
                assert!(
                    !no_route && status != 405,
                    "{method} {path} is documented but answers {status} {body}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is served but not documented: {body}"
                );
            }
        }
    }
}

/// The document passes `openapi-spec-validator` (OpenAPI 3.1), installed
/// by scripts/test into tests/python/.venv.
#[tokio::test]
async fn a_standard_validator_accepts_the_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("tests/python/.venv/bin/python");
    if !python.exists() {
        eprintln!(
            "skipped: no {} (scripts/test makes it: pip install -r tests/python/requirements.txt)",
            python.display()
        );
        return;
    }
    let server = Server::start();
    let doc = Document::fetch(&server).await;
    assert_eq!(doc.json["openapi"], "3.1.0");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc.json).unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
