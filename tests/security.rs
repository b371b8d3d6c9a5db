//! Issue 6 item 4, security: who may do what (every route and event × logged
//! out / not a member / member), cross-origin writes and socket handshakes,
//! session ids at login, security headers and cookie attributes.

mod common;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{PASSWORD, Server, Socket, TestUser};
use futures_util::FutureExt as _;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use rust_socketio::TransportType;
use rust_socketio::asynchronous::ClientBuilder;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A client that shows each redirect instead of following it.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Alice and Bob share a room, and a group Alice owns; Carol and Dave are
/// registered but in neither.
struct Cast {
    alice: TestUser,
    bob: TestUser,
    carol: TestUser,
    dave: TestUser,
    rid: String,
    gid: String,
}

async fn cast(server: &Server) -> Cast {
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let carol = api.register("carol").await;
    let dave = api.register("dave").await;
    let rid = api.open_chat(&alice, &bob).await;
    let gid = api.create_group(&alice, "Group", &[&bob]).await;
    Cast {
        alice,
        bob,
        carol,
        dave,
        rid,
        gid,
    }
}

// ------------------------------------------------------ authorization matrix

#[derive(Clone, Copy, Debug)]
enum Who {
    LoggedOut,
    NotMember,
    Member,
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// This status, whatever the body.
    Status(u16),
    /// 200 or 201: found or made (`POST /chats` depends on what earlier rows opened).
    Success,
    /// A redirect to exactly this location (`{rid}` is replaced).
    Redirect(u16, &'static str),
    /// A JSON API error with this status and contract code.
    Error(u16, &'static str),
}

const OUT: Expect = Expect::Redirect(303, "/login");
const UNAUTHORIZED: Expect = Expect::Error(401, "unauthorized");
const NOT_MEMBER: Expect = Expect::Error(403, "not_member");
const NO_SUCH_ROOM: Expect = Expect::Error(404, "no_such_room");
const NO_SUCH_SESSION: Expect = Expect::Error(404, "no_such_session");
const OK: Expect = Expect::Status(200);

/// One route: method, path and body (`{rid}`, `{gid}` the group, `{n}` a fresh
/// number, `{contact}` Bob's email), then the expected answer for each [`Who`].
/// Pages are called with the session cookie, `/api/` with a bearer token.
type Row = (
    &'static str,
    &'static str,
    Option<&'static str>,
    [Expect; 3],
);

const FORM_REGISTER: &str =
    "username=u{n}&email=u{n}%40example.test&password=correct+horse+battery";
const FORM_LOGIN: &str = "email=dave%40example.test&password=correct+horse+battery";
const JSON_REGISTER: &str =
    r#"{"username": "j{n}", "email": "j{n}@example.test", "password": "correct horse battery"}"#;
const JSON_LOGIN: &str = r#"{"email": "dave@example.test", "password": "correct horse battery"}"#;
/// A browser's push subscription (a real P-256 key); nobody it belongs to is sent a message here.
const JSON_PUSH_SUBSCRIPTION: &str = r#"{"endpoint": "https://push.example.test/{n}", "keys": {"p256dh": "BNjRYnlLm2ggLnFfTkPAm-FvlzP-IzCi_Yr_7L8Bz_T9sSmzOLieg7-6sUrvaSLLjJsyVbRpDh0DakqYkl3Nr5k", "auth": "AAECAwQFBgcICQoLDA0ODw"}}"#;

#[rustfmt::skip]
const ROUTES: &[Row] = &[
    // Pages (PROTOCOL.md §1 and the message form).      logged out / not a member / member
    ("GET", "/", None, [OUT, Expect::Redirect(303, "/chat/"), Expect::Redirect(303, "/chat/")]),
    ("GET", "/register", None, [OK, OK, OK]),
    ("POST", "/register", Some(FORM_REGISTER), [OUT, OUT, OUT]),
    ("GET", "/login", None, [OK, Expect::Redirect(303, "/chat/"), Expect::Redirect(303, "/chat/")]),
    ("POST", "/login", Some(FORM_LOGIN), [Expect::Redirect(303, "/chat/"); 3]),
    ("POST", "/logout", None, [OUT, OUT, OUT]),
    ("GET", "/chat", None, [Expect::Redirect(308, "/chat/"); 3]),
    ("GET", "/chat/", None, [OUT, OK, OK]),
    ("GET", "/chat/?rid={rid}", None, [OUT, Expect::Status(403), OK]),
    ("GET", "/chat/?rid=nope", None, [OUT, Expect::Status(404), Expect::Status(404)]),
    ("POST", "/chat/?rid={rid}", Some("message=hi"), [OUT, Expect::Status(403), Expect::Redirect(303, "/chat/?rid={rid}")]),
    ("POST", "/new-chat", Some("email={contact}"), [OUT, Expect::Status(303), Expect::Status(303)]),
    ("POST", "/new-group", Some("title=G{n}&emails={contact}"), [OUT, Expect::Status(303), Expect::Status(303)]),
    ("GET", "/static/chat.js", None, [OK, OK, OK]),
    ("GET", "/healthz", None, [OK, OK, OK]),
    // JSON API (PROTOCOL.md §2).
    ("POST", "/api/v1/users", Some(JSON_REGISTER), [Expect::Status(201); 3]),
    ("POST", "/api/v1/sessions", Some(JSON_LOGIN), [Expect::Status(201); 3]),
    ("DELETE", "/api/v1/sessions/current", None, [UNAUTHORIZED, Expect::Status(204), Expect::Status(204)]),
    ("GET", "/api/v1/sessions", None, [UNAUTHORIZED, OK, OK]),
    ("DELETE", "/api/v1/sessions/0123456789abcdef0123456789abcdef", None, [UNAUTHORIZED, NO_SUCH_SESSION, NO_SUCH_SESSION]),
    ("GET", "/api/v1/me", None, [UNAUTHORIZED, OK, OK]),
    ("GET", "/api/v1/chats", None, [UNAUTHORIZED, OK, OK]),
    ("POST", "/api/v1/chats", Some(r#"{"email": "{contact}"}"#), [UNAUTHORIZED, Expect::Success, Expect::Success]),
    ("GET", "/api/v1/rooms/{rid}/messages", None, [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("GET", "/api/v1/rooms/{rid}/messages?after=0&limit=5", None, [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("POST", "/api/v1/rooms/{rid}/messages", Some(r#"{"message": "hi"}"#), [UNAUTHORIZED, NOT_MEMBER, Expect::Status(201)]),
    ("GET", "/api/v1/rooms/nope/messages", None, [UNAUTHORIZED, NO_SUCH_ROOM, NO_SUCH_ROOM]),
    ("POST", "/api/v1/rooms/nope/messages", Some(r#"{"message": "hi"}"#), [UNAUTHORIZED, NO_SUCH_ROOM, NO_SUCH_ROOM]),
    ("GET", "/api/v1/nothing", None, [Expect::Error(404, "not_found"); 3]),
    // The OpenAPI document is public.
    ("GET", "/api/v1/openapi.json", None, [OK, OK, OK]),
    // Found by fuzzing: these answered without the JSON error body.
    ("GET", "/api/v1/", None, [Expect::Error(404, "not_found"); 3]),
    ("PUT", "/api/v1/me", None, [Expect::Error(405, "method_not_allowed"); 3]),
    // The messenger features (docs/protocol.md). Message 1 is Alice's (the form above), 2 too (the API).
    ("POST", "/api/v1/groups", Some(r#"{"title": "G{n}", "emails": ["{contact}"]}"#), [UNAUTHORIZED, Expect::Status(201), Expect::Status(201)]),
    ("PATCH", "/api/v1/rooms/{gid}", Some(r#"{"title": "Renamed"}"#), [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("GET", "/api/v1/rooms/{gid}/members", None, [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("POST", "/api/v1/rooms/{gid}/members", Some(r#"{"email": "{contact}"}"#), [UNAUTHORIZED, NOT_MEMBER, Expect::Error(409, "already_member")]),
    ("DELETE", "/api/v1/rooms/{gid}/members/999999", None, [UNAUTHORIZED, NOT_MEMBER, Expect::Error(404, "no_such_user")]),
    ("PATCH", "/api/v1/rooms/{rid}", Some(r#"{"title": "Renamed"}"#), [UNAUTHORIZED, NOT_MEMBER, Expect::Error(422, "not_group")]),
    ("POST", "/api/v1/rooms/{rid}/typing", Some(r#"{"typing": true}"#), [UNAUTHORIZED, NOT_MEMBER, Expect::Status(204)]),
    ("POST", "/api/v1/rooms/{rid}/read", Some(r#"{"seq": 1}"#), [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("GET", "/api/v1/rooms/{rid}/changes?after_rev=0", None, [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("PATCH", "/api/v1/rooms/{rid}/messages/1", Some(r#"{"message": "edited"}"#), [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("POST", "/api/v1/rooms/{rid}/messages/1/reactions", Some(r#"{"emoji": "👍"}"#), [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("DELETE", "/api/v1/rooms/{rid}/messages/2", None, [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("GET", "/api/v1/rooms/nope/changes", None, [UNAUTHORIZED, NO_SUCH_ROOM, NO_SUCH_ROOM]),
    ("GET", "/api/v1/search?q=hi", None, [UNAUTHORIZED, OK, OK]),
    ("DELETE", "/api/v1/rooms/{gid}/members/me", None, [UNAUTHORIZED, NOT_MEMBER, Expect::Status(204)]),
    ("GET", "/api/v1/rooms/%ff/messages", None, [UNAUTHORIZED, Expect::Error(400, "invalid"), Expect::Error(400, "invalid")]),
    // Notifications (docs/protocol.md): a chat's level, Web Push.
    ("PUT", "/api/v1/rooms/{rid}/notify", Some(r#"{"notify": "none"}"#), [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("GET", "/api/v1/push/key", None, [UNAUTHORIZED, OK, OK]),
    ("POST", "/api/v1/push/subscriptions", Some(JSON_PUSH_SUBSCRIPTION), [UNAUTHORIZED, Expect::Status(201), Expect::Status(201)]),
    ("GET", "/api/v1/push/subscriptions", None, [UNAUTHORIZED, OK, OK]),
    ("DELETE", "/api/v1/push/subscriptions/999999", None, [UNAUTHORIZED, Expect::Error(404, "not_found"), Expect::Error(404, "not_found")]),
    // Attachments (docs/protocol.md): only members upload into a room; a
    // file of the room is its members' (here one nobody has).
    ("POST", "/api/v1/rooms/{rid}/attachments?name=a.txt", Some("hello"), [UNAUTHORIZED, NOT_MEMBER, Expect::Status(201)]),
    ("GET", "/api/v1/attachments/nope", None, [UNAUTHORIZED, Expect::Error(404, "not_found"), Expect::Error(404, "not_found")]),
    ("GET", "/api/v1/attachments/nope/thumbnail", None, [UNAUTHORIZED, Expect::Error(404, "not_found"), Expect::Error(404, "not_found")]),
    // Invitations (docs/protocol.md): an admin's (alice, the first account), not carol's.
    ("POST", "/api/v1/invites", Some("{}"), [UNAUTHORIZED, Expect::Error(403, "not_admin"), Expect::Status(201)]),
    ("GET", "/api/v1/invites", None, [UNAUTHORIZED, OK, OK]),
    ("DELETE", "/api/v1/invites/nope", None, [UNAUTHORIZED, Expect::Error(404, "not_found"), Expect::Error(404, "not_found")]),
    // Bots and webhooks (docs/protocol.md): one's own bots; a room's members' incoming webhooks.
    ("POST", "/api/v1/bots", Some(r#"{"username": "bot{n}"}"#), [UNAUTHORIZED, Expect::Status(201), Expect::Status(201)]),
    ("GET", "/api/v1/bots", None, [UNAUTHORIZED, OK, OK]),
    ("DELETE", "/api/v1/bots/999999", None, [UNAUTHORIZED, Expect::Error(404, "not_found"), Expect::Error(404, "not_found")]),
    ("GET", "/api/v1/bots/999999/tokens", None, [UNAUTHORIZED, Expect::Error(404, "not_found"), Expect::Error(404, "not_found")]),
    ("POST", "/api/v1/rooms/{rid}/webhooks", Some(r#"{"name": "hook{n}"}"#), [UNAUTHORIZED, NOT_MEMBER, Expect::Status(201)]),
    ("GET", "/api/v1/rooms/{rid}/webhooks", None, [UNAUTHORIZED, NOT_MEMBER, OK]),
    ("DELETE", "/api/v1/rooms/{rid}/webhooks/nope", None, [UNAUTHORIZED, NOT_MEMBER, Expect::Error(404, "not_found")]),
    ("POST", "/api/v1/webhooks", Some(r#"{"url": "https://example.test/{n}", "events": ["message"]}"#), [UNAUTHORIZED, Expect::Status(201), Expect::Status(201)]),
    ("GET", "/api/v1/webhooks", None, [UNAUTHORIZED, OK, OK]),
    ("DELETE", "/api/v1/webhooks/nope", None, [UNAUTHORIZED, Expect::Error(404, "not_found"), Expect::Error(404, "not_found")]),
    // The account (docs/protocol.md): one's own password and devices.
    ("PUT", "/api/v1/me/password", Some(r#"{"current_password": "wrong guess", "new_password": "a new passphrase"}"#), [UNAUTHORIZED, Expect::Error(422, "invalid"), Expect::Error(422, "invalid")]),
    ("GET", "/account", None, [OUT, OK, OK]),
    ("POST", "/account/password", Some("current_password=wrong+guess&new_password=a+new+passphrase"), [OUT, Expect::Status(422), Expect::Status(422)]),
    ("POST", "/account/sessions/0123456789abcdef0123456789abcdef/end", None, [OUT, Expect::Status(404), Expect::Status(404)]),
    // Password reset by email (docs/protocol.md): off here (no --smtp-url), for everyone.
    ("POST", "/api/v1/password-resets", Some(r#"{"email": "{contact}"}"#), [Expect::Error(404, "reset_unavailable"); 3]),
    ("POST", "/api/v1/password-resets/nope", Some(r#"{"password": "a new passphrase"}"#), [Expect::Error(404, "reset_unavailable"); 3]),
    ("GET", "/forgot", None, [Expect::Status(404); 3]),
    ("GET", "/reset/nope", None, [Expect::Status(404); 3]),
];

#[tokio::test]
async fn every_route_answers_each_kind_of_caller_as_the_contract_says() {
    let server = Server::start();
    let cast = cast(&server).await;
    let http = http();
    let counter = AtomicU32::new(0);
    let mut failures = Vec::new();
    for &(method, path, body, expected) in ROUTES {
        for (who, expect) in [Who::LoggedOut, Who::NotMember, Who::Member]
            .into_iter()
            .zip(expected)
        {
            let fill = |s: &str, contact: &str| {
                s.replace("{rid}", &cast.rid)
                    .replace("{gid}", &cast.gid)
                    .replace("{contact}", contact)
                    .replace("{n}", &counter.fetch_add(1, Ordering::Relaxed).to_string())
            };
            let contact = &cast.bob.email;
            let token = match who {
                Who::LoggedOut => None,
                Who::NotMember => Some(server.api().new_session(&cast.carol).await),
                Who::Member => Some(server.api().new_session(&cast.alice).await),
            };
            let path = fill(path, contact);
            let api = path.starts_with("/api/");
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = http.request(method.clone(), format!("{}{path}", server.url));
            match (&token, api) {
                (Some(t), true) => req = req.bearer_auth(t),
                (Some(t), false) => req = req.header("cookie", format!("natter_session={t}")),
                (None, _) => {}
            }
            if let Some(body) = body {
                let content_type = if api {
                    "application/json"
                } else {
                    "application/x-www-form-urlencoded"
                };
                let body = fill(body, &urlencode_if(!api, contact));
                req = req.header("content-type", content_type).body(body);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get(LOCATION)
                .map(|l| l.to_str().unwrap().to_owned());
            let text = r.text().await.unwrap();
            let ok = match expect {
                Expect::Status(s) => status == s,
                Expect::Success => status == 200 || status == 201,
                Expect::Redirect(s, to) => {
                    status == s && location.as_deref() == Some(fill(to, contact).as_str())
                }
                Expect::Error(s, code) => {
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    status == s && body["error"]["code"] == code
                }
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {who:?}: expected {expect:?}, got {status} {location:?} {}",
                    text.chars().take(120).collect::<String>()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // The cells that write did write, as the member and only as the member.
    let history = server.api().history(&cast.alice, &cast.rid, "").await;
    assert_eq!(history.len(), 2, "one message by form, one by the API");
}

fn urlencode_if(form: bool, s: &str) -> String {
    if form {
        s.replace('@', "%40")
    } else {
        s.to_owned()
    }
}

/// One event: name, payload (`{rid}`, `{gid}` replaced), then the ack's error code (or
/// `None` for `{ok: true}`) for a non-member and a member. Logged out, nobody
/// gets as far as sending an event: the connection is refused.
type EventRow = (&'static str, &'static str, [Option<&'static str>; 2]);

#[rustfmt::skip]
const EVENTS: &[EventRow] = &[
    ("join-chat", r#"{"rid": "{rid}"}"#, [Some("not_member"), None]),
    ("outgoing", r#"{"rid": "{rid}", "message": "hi"}"#, [Some("not_member"), None]),
    ("sync", r#"{"rid": "{rid}", "after_seq": 0}"#, [Some("not_member"), None]),
    ("join-chat", r#"{"rid": "nope"}"#, [Some("no_such_room"), Some("no_such_room")]),
    ("outgoing", r#"{"rid": "nope", "message": "hi"}"#, [Some("no_such_room"), Some("no_such_room")]),
    ("sync", r#"{"rid": "nope", "after_seq": 0}"#, [Some("no_such_room"), Some("no_such_room")]),
    // The messenger features (docs/protocol.md). Message 1 is the member's "hi" above.
    ("read", r#"{"rid": "{rid}", "seq": 1}"#, [Some("not_member"), None]),
    ("typing", r#"{"rid": "{rid}", "typing": true}"#, [Some("not_member"), None]),
    ("edit-message", r#"{"rid": "{rid}", "seq": 1, "message": "edited"}"#, [Some("not_member"), None]),
    ("react", r#"{"rid": "{rid}", "seq": 1, "emoji": "👍"}"#, [Some("not_member"), None]),
    ("delete-message", r#"{"rid": "{rid}", "seq": 1}"#, [Some("not_member"), None]),
    ("react", r#"{"rid": "nope", "seq": 1, "emoji": "👍"}"#, [Some("no_such_room"), Some("no_such_room")]),
    ("search", r#"{"q": "hi"}"#, [None, None]),
    ("create-group", r#"{"title": "G"}"#, [None, None]),
    ("rename-group", r#"{"rid": "{gid}", "title": "Renamed"}"#, [Some("not_member"), None]),
    ("rename-group", r#"{"rid": "{rid}", "title": "Renamed"}"#, [Some("not_member"), Some("not_group")]),
    ("add-member", r#"{"rid": "{gid}", "email": "bob@example.test"}"#, [Some("not_member"), Some("already_member")]),
    ("remove-member", r#"{"rid": "{gid}", "user_id": "999999"}"#, [Some("not_member"), Some("no_such_user")]),
    ("leave-group", r#"{"rid": "{gid}"}"#, [Some("not_member"), None]),
];

#[tokio::test]
async fn every_event_answers_each_kind_of_caller_as_the_contract_says() {
    let server = Server::start();
    let cast = cast(&server).await;
    let outsider = Socket::connect(&server.url, &cast.carol.token).await;
    let member = Socket::connect(&server.url, &cast.alice.token).await;
    let mut failures = Vec::new();
    for &(event, payload, expected) in EVENTS {
        let payload = payload
            .replace("{rid}", &cast.rid)
            .replace("{gid}", &cast.gid);
        let payload: Value = serde_json::from_str(&payload).unwrap();
        // Logged out: no credentials, a bogus token, a cookie that names no session.
        for (auth, headers) in [
            (json!({}), vec![]),
            (json!({"token": "bogus"}), vec![]),
            (json!({}), vec![("Cookie", "natter_session=bogus")]),
        ] {
            let refused = refused(
                &server.url,
                auth.clone(),
                TransportType::Websocket,
                &headers,
            )
            .await;
            if !refused.contains("unauthorized") {
                failures.push(format!(
                    "{event} logged out with {auth} {headers:?}: {refused}"
                ));
            }
        }
        for (who, socket, expect) in [
            (Who::NotMember, &outsider, expected[0]),
            (Who::Member, &member, expected[1]),
        ] {
            let ack = socket.ack(event, payload.clone()).await;
            let ok = match expect {
                None => ack["ok"] == true,
                Some(code) => ack == json!({"error": {"code": code}}),
            };
            if !ok {
                failures.push(format!(
                    "{event} {payload} as {who:?}: expected {expect:?}, got {ack}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let history = server.api().history(&cast.alice, &cast.rid, "").await;
    assert_eq!(history.len(), 1, "only the member's send was stored");
    outsider.close().await;
    member.close().await;
}

/// Why the server refused a connection (its `connect_error` message), or
/// `"connected"` when it accepted it.
async fn refused(
    url: &str,
    auth: Value,
    transport: TransportType,
    headers: &[(&str, &str)],
) -> String {
    let (tx, rx) = oneshot::channel::<String>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let mut builder = ClientBuilder::new(url);
    for (name, value) in headers {
        builder = builder.opening_header(*name, *value);
    }
    let on_error = tx.clone();
    let client = builder
        .auth(auth)
        .transport_type(transport)
        .reconnect(false)
        .on("error", move |payload, _| {
            let tx = on_error.clone();
            async move {
                let text = match payload {
                    rust_socketio::Payload::Text(v) => v.iter().map(Value::to_string).collect(),
                    _ => String::new(),
                };
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(text);
                }
            }
            .boxed()
        })
        .on(rust_socketio::Event::Connect, move |_, _| {
            let tx = tx.clone();
            async move {
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send("connected".to_owned());
                }
            }
            .boxed()
        })
        .connect()
        .await;
    let got = tokio::time::timeout(Duration::from_secs(5), rx).await;
    if let Ok(client) = client {
        let _ = client.disconnect().await;
    }
    got.expect("neither connected nor refused within 5 s")
        .unwrap()
}

// ------------------------------------------------------- cross-origin writes

/// Logs in through the form; returns the `natter_session=...` cookie pair.
async fn browser_login(server: &Server, user: &TestUser) -> String {
    let r = http()
        .post(format!("{}/login", server.url))
        .form(&[("email", user.email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    session_cookie(r.headers()).expect("a session cookie")
}

/// The `natter_session=VALUE` pair a response sets, if any.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("natter_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn cross_origin_writes_are_refused_and_change_nothing() {
    let server = Server::start();
    let cast = cast(&server).await;
    let cookie = browser_login(&server, &cast.alice).await;
    let http = http();
    let before_chats = server
        .api()
        .call("GET", "/chats", None, Some(&cast.alice.token))
        .await;
    let dave = cast.dave.email.as_str();
    let to_room = format!("/chat/?rid={}", cast.rid);
    let writes: [(&str, Vec<(&str, &str)>); 6] = [
        ("/logout", vec![]),
        ("/new-chat", vec![("email", dave)]),
        (&to_room, vec![("message", "forged")]),
        (
            "/register",
            vec![
                ("username", "mallory"),
                ("email", "mallory@example.test"),
                ("password", PASSWORD),
            ],
        ),
        ("/login", vec![("email", dave), ("password", PASSWORD)]),
        ("/api/v1/chats", vec![]),
    ];
    // Our host and port over https is another origin too: we serve plain http.
    let https_here = server.url.replacen("http://", "https://", 1);
    let foreign = [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("referer", "https://evil.example/attack.html"),
        // Another port of the same host is another origin.
        ("origin", "http://127.0.0.1:1"),
        ("origin", https_here.as_str()),
    ];
    for (path, form) in &writes {
        for (name, value) in foreign {
            let mut req = http
                .post(format!("{}{path}", server.url))
                .header("cookie", &cookie)
                .header(name, value);
            req = if path.starts_with("/api/") {
                req.json(&json!({"email": dave}))
            } else {
                req.form(form)
            };
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 403, "POST {path} with {name}: {value}");
            assert!(
                session_cookie(r.headers()).is_none(),
                "no session handed out"
            );
        }
    }
    // The same message post through the JSON API with the cookie, too.
    let r = http
        .post(format!("{}/api/v1/rooms/{}/messages", server.url, cast.rid))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .json(&json!({"message": "forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()["error"]["code"],
        "forbidden"
    );

    // Nothing changed: the session lives, no chat, no message, no account.
    let token = cookie.trim_start_matches("natter_session=");
    let api = server.api();
    assert_eq!(api.call("GET", "/me", None, Some(token)).await.status, 200);
    let after_chats = api
        .call("GET", "/chats", None, Some(&cast.alice.token))
        .await;
    assert_eq!(before_chats.body, after_chats.body);
    assert!(api.history(&cast.alice, &cast.rid, "").await.is_empty());
    let mallory =
        json!({"username": "mallory", "email": "mallory@example.test", "password": PASSWORD});
    assert_eq!(
        api.call("POST", "/users", Some(mallory), None).await.status,
        201
    );

    // Our own origin, or a referer from our pages, works: the refusals were about the origin.
    let r = http
        .post(format!("{}{to_room}", server.url))
        .header("cookie", &cookie)
        .header("origin", &server.url)
        .form(&[("message", "mine")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = http
        .post(format!("{}/new-chat", server.url))
        .header("cookie", &cookie)
        .header("referer", format!("{}/chat/", server.url))
        .form(&[("email", dave)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(api.history(&cast.alice, &cast.rid, "").await.len(), 1);
}

// ------------------------------------------------- cross-site socket handshakes

#[tokio::test]
async fn a_cross_site_socket_handshake_with_the_cookie_is_refused() {
    let server = Server::start();
    let cast = cast(&server).await;
    let cookie = browser_login(&server, &cast.alice).await;
    let transports = [
        ("websocket", TransportType::Websocket),
        ("polling", TransportType::Polling),
    ];
    for (name, transport) in transports {
        let https_here = server.url.replacen("http://", "https://", 1);
        for origin in [
            "https://evil.example",
            "null",
            "http://127.0.0.1:1",
            &https_here,
        ] {
            let got = refused(
                &server.url,
                json!({}),
                transport.clone(),
                &[("Cookie", &cookie), ("Origin", origin)],
            )
            .await;
            assert!(got.contains("unauthorized"), "{name} from {origin}: {got}");
        }
        let got = refused(
            &server.url,
            json!({}),
            transport.clone(),
            &[("Cookie", &cookie), ("Referer", "https://evil.example/x")],
        )
        .await;
        assert!(
            got.contains("unauthorized"),
            "{name} with a foreign referer: {got}"
        );
        // The same cookie from our own origin is a browser on our page: accepted.
        let ours = refused(
            &server.url,
            json!({}),
            transport.clone(),
            &[("Cookie", &cookie), ("Origin", &server.url)],
        )
        .await;
        assert_eq!(ours, "connected", "{name} from our origin");
        // A token in `auth` is not ambient authority: any origin may present it.
        let token = refused(
            &server.url,
            json!({"token": cast.bob.token}),
            transport.clone(),
            &[("Origin", "https://app.example")],
        )
        .await;
        assert_eq!(token, "connected", "{name} with a token");
    }
}

/// Behind a trusted proxy that says the browser came over https, our origin
/// is the https one, for forms and for cookie handshakes alike; the same
/// header from anyone else changes nothing.
#[tokio::test]
async fn behind_a_trusted_https_proxy_the_origin_is_https() {
    let server = Server::start_with(&["--trusted-proxies", "127.0.0.0/8"]);
    let cast = cast(&server).await;
    let cookie = browser_login(&server, &cast.alice).await;
    let https_here = server.url.replacen("http://", "https://", 1);
    let new_chat = |origin: &str, proto: &str| {
        http()
            .post(format!("{}/new-chat", server.url))
            .header("cookie", &cookie)
            .header("origin", origin)
            .header("x-forwarded-proto", proto)
            .form(&[("email", cast.dave.email.as_str())])
            .send()
    };
    assert_eq!(new_chat(&server.url, "https").await.unwrap().status(), 403);
    assert_eq!(new_chat(&https_here, "https").await.unwrap().status(), 303);
    let socket = |origin: String| {
        let cookie = cookie.clone();
        let url = server.url.clone();
        async move {
            let headers = [
                ("Cookie", cookie.as_str()),
                ("Origin", origin.as_str()),
                ("X-Forwarded-Proto", "https"),
            ];
            refused(&url, json!({}), TransportType::Websocket, &headers).await
        }
    };
    assert!(socket(server.url.clone()).await.contains("unauthorized"));
    assert_eq!(socket(https_here.clone()).await, "connected");

    // Without the trust, X-Forwarded-Proto is the client's word: ignored.
    let direct = Server::start();
    let cast = self::cast(&direct).await;
    let cookie = browser_login(&direct, &cast.alice).await;
    let r = http()
        .post(format!("{}/new-chat", direct.url))
        .header("cookie", &cookie)
        .header("origin", direct.url.replacen("http://", "https://", 1))
        .header("x-forwarded-proto", "https")
        .form(&[("email", cast.dave.email.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

// ------------------------------------------------------------------ sessions

#[tokio::test]
async fn logging_in_always_issues_a_new_session_id() {
    let server = Server::start();
    let cast = cast(&server).await;
    let http = http();
    let login = |planted: Option<String>| {
        let mut req = http
            .post(format!("{}/login", server.url))
            .form(&[("email", cast.alice.email.as_str()), ("password", PASSWORD)]);
        if let Some(cookie) = planted {
            req = req.header("cookie", cookie);
        }
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 303);
            session_cookie(r.headers()).expect("a session cookie on login")
        }
    };
    // An attacker plants a session id they know: their own live one, or one they made up.
    let attackers = format!(
        "natter_session={}",
        server.api().new_session(&cast.carol).await
    );
    let after = login(Some(attackers.clone())).await;
    assert_ne!(after, attackers, "a planted live session was kept");
    let made_up = "natter_session=chosen-by-the-attacker".to_owned();
    let after_made_up = login(Some(made_up.clone())).await;
    assert_ne!(after_made_up, made_up, "a planted session id was adopted");
    assert_ne!(after_made_up, after, "two logins, one session id");
    let plain = login(None).await;
    assert!(plain != after && plain != after_made_up);

    let api = server.api();
    let me = |cookie: &str| cookie.trim_start_matches("natter_session=").to_owned();
    assert_eq!(
        api.call("GET", "/me", None, Some(&me(&made_up)))
            .await
            .status,
        401
    );
    // The planted live session is still the attacker's, not Alice's.
    let r = api.call("GET", "/me", None, Some(&me(&attackers))).await;
    assert_eq!(r.body["username"], "carol");
    let r = api.call("GET", "/me", None, Some(&me(&after))).await;
    assert_eq!(r.body["username"], "alice");

    // Logging out ends that session id for good.
    let r = http
        .post(format!("{}/logout", server.url))
        .header("cookie", &after)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        api.call("GET", "/me", None, Some(&me(&after))).await.status,
        401
    );
    assert_eq!(
        api.call("GET", "/me", None, Some(&me(&plain))).await.status,
        200
    );
}

// -------------------------------------------------------- headers and cookies

/// The security headers every HTTP response must carry.
fn check_security_headers(what: &str, headers: &HeaderMap) {
    let get = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = get("content-security-policy");
    let directive = |name: &str| {
        csp.split(';')
            .map(str::trim)
            .find(|d| d.split_whitespace().next() == Some(name))
            .map(str::to_owned)
    };
    let scripts = directive("script-src")
        .or_else(|| directive("default-src"))
        .unwrap_or_else(|| panic!("{what}: CSP without script-src or default-src: {csp}"));
    for unsafe_source in [
        "'unsafe-inline'",
        "'unsafe-eval'",
        "*",
        "data:",
        "http:",
        "https:",
    ] {
        assert!(
            !scripts.split_whitespace().any(|s| s == unsafe_source),
            "{what}: scripts allowed from {unsafe_source}: {csp}"
        );
    }
    assert_eq!(
        directive("frame-ancestors").as_deref(),
        Some("frame-ancestors 'none'"),
        "{what}"
    );
    assert_eq!(
        directive("object-src").as_deref(),
        Some("object-src 'none'"),
        "{what}"
    );
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    let referrer = get("referrer-policy");
    assert!(
        [
            "no-referrer",
            "same-origin",
            "strict-origin",
            "strict-origin-when-cross-origin"
        ]
        .contains(&referrer.as_str()),
        "{what}: Referrer-Policy {referrer}"
    );
}

#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers() {
    let server = Server::start();
    let cast = cast(&server).await;
    let cookie = browser_login(&server, &cast.alice).await;
    let http = http();
    let pages = [
        "/login",
        "/register",
        "/",
        "/chat/",
        "/chat/?rid=nope",
        "/api/v1/me",
        "/api/v1/chats",
        "/api/v1/nothing",
        "/static/chat.js",
        "/static/app.css",
        "/static/vendor/socket.io.min.js",
        "/static/nope.js",
        "/healthz",
        "/no-such-page",
        "/socket.io/?EIO=4&transport=polling",
    ];
    for path in pages {
        for with_cookie in [false, true] {
            let mut req = http.get(format!("{}{path}", server.url));
            if with_cookie {
                req = req.header("cookie", &cookie);
            }
            let r = req.send().await.unwrap();
            check_security_headers(&format!("GET {path} (cookie: {with_cookie})"), r.headers());
        }
    }
    // Refusals and errors too.
    let r = http
        .post(format!("{}/logout", server.url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    check_security_headers("a refused cross-origin POST", r.headers());
    let r = http
        .post(format!("{}/api/v1/users", server.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    check_security_headers("a malformed API body", r.headers());
}

/// The attributes of a `Set-Cookie` header, lowercased, without the pair itself.
fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn cookies_are_http_only_and_same_site() {
    let server = Server::start();
    let http = http();
    // Registering sets the flash cookie, logging in the session cookie, logging out clears it.
    let r = http
        .post(format!("{}/register", server.url))
        .form(&[
            ("username", "alice"),
            ("email", "alice@example.test"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let mut set_cookies: Vec<String> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(!set_cookies.is_empty(), "the flash cookie");
    let r = http
        .post(format!("{}/login", server.url))
        .form(&[("email", "alice@example.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let session = session_cookie(r.headers()).expect("a session cookie");
    set_cookies.extend(
        r.headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let r = http
        .post(format!("{}/logout", server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    set_cookies.extend(
        r.headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    assert!(set_cookies.len() >= 3, "{set_cookies:?}");
    for set in &set_cookies {
        let attrs = attributes(set);
        assert!(
            attrs.contains(&"path=/".to_owned()),
            "not for the whole site: {set}"
        );
        if attrs.contains(&"max-age=0".to_owned()) {
            continue; // a removal: the browser drops the cookie, attributes do not matter
        }
        assert!(
            attrs.contains(&"httponly".to_owned()),
            "not HttpOnly: {set}"
        );
        assert!(
            attrs.contains(&"samesite=lax".to_owned())
                || attrs.contains(&"samesite=strict".to_owned()),
            "no SameSite: {set}"
        );
        assert!(
            attrs.contains(&"path=/".to_owned()),
            "not for the whole site: {set}"
        );
    }
    let session_set = set_cookies
        .iter()
        .find(|s| s.starts_with("natter_session=") && !s.starts_with("natter_session=;"))
        .unwrap();
    assert!(
        !attributes(session_set)
            .iter()
            .any(|a| a.starts_with("domain=")),
        "the session cookie is host-only: {session_set}"
    );
}
