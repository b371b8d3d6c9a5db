//! Webhooks (docs/protocol.md, "Bots and webhooks"). Incoming: a secret URL
//! whose posts reach the room's sockets live and its history, with the
//! send path's rules, and that stops working when deleted or when its
//! creator leaves. Outgoing: deliveries to a receiver the test runs on
//! loopback, their signature checked here with an HMAC computed apart
//! from the server's, retries after failures, the owner's membership at
//! delivery time, a receiver that is down not slowing sends, and a full
//! queue dropping what does not fit.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{Api, Reply, Server, Socket, TestUser, free_port};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

// ---------------------------------------------------------------- receiver

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    headers: HeaderMap,
    /// The body as sent: what the signature covers.
    raw: String,
    body: Value,
    at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    inbox: Arc<Mutex<Vec<Received>>>,
    /// While set, `/hang/…` answers nothing for 30 s.
    hanging: Arc<AtomicBool>,
}

impl Receiver {
    /// Serves on loopback: `/ok/{name}` answers 200, `/flaky/{name}` 500
    /// to the first two requests of that name and 200 after, `/fail/{name}`
    /// always 503, `/hang/{name}`
    /// hangs while [`Receiver::hanging`] is set, then answers 200. Returns
    /// it with its origin.
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/{kind}/{name}", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, origin)
    }

    fn got(&self, name: &str) -> Vec<Received> {
        let inbox = self.inbox.lock().unwrap();
        inbox.iter().filter(|r| r.name == name).cloned().collect()
    }

    /// Waits (20 s at most: a delivery's five tries take 15 s) until `count`
    /// requests of `name` arrived.
    async fn wait_for(&self, name: &str, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.got(name);
            if got.len() >= count || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    if kind == "hang" {
        let until = Instant::now() + Duration::from_secs(30);
        while receiver.hanging.load(Ordering::SeqCst) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let tries = {
        let mut inbox = receiver.inbox.lock().unwrap();
        inbox.push(Received {
            name: name.clone(),
            headers,
            body: serde_json::from_str(&body).expect("a JSON body"),
            raw: body,
            at: Instant::now(),
        });
        inbox.iter().filter(|r| r.name == name).count()
    };
    match kind.as_str() {
        "flaky" if tries <= 2 => StatusCode::INTERNAL_SERVER_ERROR,
        "fail" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    }
}

/// Checks a delivery's signature as a receiver would: HMAC-SHA256 keyed by
/// the webhook's secret over `TIMESTAMP.BODY`, in hex.
fn verify(secret: &str, received: &Received) {
    let header = |name: &str| received.headers[name].to_str().unwrap().to_owned();
    let timestamp = header("x-natter-timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - timestamp.parse::<i64>().unwrap()).abs() < 60,
        "fresh"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(received.raw.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header("x-natter-signature"), format!("sha256={hex}"));
    assert_eq!(
        header("x-natter-event-id"),
        received.body["id"].as_str().unwrap()
    );
    assert_eq!(
        header("x-natter-event"),
        received.body["event"].as_str().unwrap()
    );
}

async fn outgoing(api: &Api, owner: &TestUser, body: Value) -> (String, String) {
    let r = api.call_as(owner, "POST", "/webhooks", Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (r.body["id"].as_str().unwrap().to_owned(), secret)
}

async fn say(api: &Api, user: &TestUser, rid: &str, text: &str) -> Value {
    let path = format!("/rooms/{rid}/messages");
    let r = api
        .call_as(user, "POST", &path, Some(json!({"message": text})))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

/// POSTs `body` (raw, with `content_type`) to an incoming webhook's URL.
async fn hook(server: &Server, url: &str, content_type: &str, body: String) -> Reply {
    let res = reqwest::Client::new()
        .post(format!("{}{url}", server.url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

// ---------------------------------------------------------------- incoming

#[tokio::test]
async fn an_incoming_webhook_posts_into_its_room_live_and_in_history() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob, cyd] = api.register_each(["ann", "bob", "cyd"]).await;
    let team = api.create_group(&ann, "Team", &[&bob]).await;
    let path = format!("/rooms/{team}/webhooks");
    let r = api
        .call_as(&cyd, "POST", &path, Some(json!({"name": "ci-bot"})))
        .await;
    assert_eq!((r.status, r.code()), (403, "not_member"));
    let made = api
        .call_as(&bob, "POST", &path, Some(json!({"name": "ci-bot"})))
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let url = made.body["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/hooks/nwh_"), "{url}");
    assert_eq!(made.body["name"], "ci-bot");
    let taken = api
        .call_as(&bob, "POST", &path, Some(json!({"name": "ann"})))
        .await;
    assert_eq!((taken.status, taken.code()), (409, "taken"));
    let bad = api
        .call_as(&bob, "POST", &path, Some(json!({"name": "c i"})))
        .await;
    assert_eq!((bad.status, bad.code()), (422, "invalid"));

    let ann_socket = Socket::connect(&server.url, &ann.token).await;
    let body = json!({"text": "  build #7 passed  ", "client_id": "b7"}).to_string();
    let posted = hook(&server, &url, "application/json", body.clone()).await;
    assert_eq!(posted.status, 201, "{:?}", posted.body);
    assert_eq!(posted.body["message"], "build #7 passed");
    assert_eq!(posted.body["sender_username"], "ci-bot");
    let heard = ann_socket.hears("build #7 passed").await;
    assert_eq!(heard["seq"], posted.body["seq"]);
    let history = api.history(&ann, &team, "").await;
    let last = history.last().unwrap();
    assert_eq!(
        (&last["message"], &last["sender_username"]),
        (&json!("build #7 passed"), &json!("ci-bot"))
    );
    // A resend with its client_id finds the stored message.
    let again = hook(&server, &url, "application/json", body).await;
    assert_eq!((again.status, &again.body["id"]), (201, &posted.body["id"]));
    assert_eq!(api.history(&ann, &team, "").await.len(), history.len());

    // Bad input: clear errors, nothing stored.
    let cases = [
        ("application/json", "{not json".to_owned(), 400, "invalid"),
        (
            "text/plain",
            json!({"text": "hi"}).to_string(),
            415,
            "invalid",
        ),
        (
            "application/json",
            json!({"message": "hi"}).to_string(),
            422,
            "invalid",
        ),
        (
            "application/json",
            json!({"text": "   "}).to_string(),
            422,
            "empty",
        ),
        (
            "application/json",
            json!({"text": "x".repeat(4001)}).to_string(),
            413,
            "too_long",
        ),
        (
            "application/json",
            json!({"text": "x".repeat(70_000)}).to_string(),
            413,
            "too_long",
        ),
    ];
    for (kind, body, status, code) in cases {
        let r = hook(&server, &url, kind, body).await;
        assert_eq!((r.status, r.code()), (status, code), "{kind}");
    }
    let unknown = hook(
        &server,
        "/hooks/nwh_nothing",
        "application/json",
        json!({"text": "x"}).to_string(),
    )
    .await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    assert_eq!(api.history(&ann, &team, "").await.len(), history.len());

    // Listed to members, without its secret.
    let listed = api.call_as(&ann, "GET", &path, None).await;
    let hooks = listed.body["webhooks"].as_array().unwrap().clone();
    assert_eq!(hooks.len(), 1);
    assert!(hooks[0].get("url").is_none());
    assert!(!listed.body.to_string().contains(&url["/hooks/".len()..]));

    // Its creator leaves: the URL answers as if it never was.
    api.call_as(&bob, "DELETE", &format!("/rooms/{team}/members/me"), None)
        .await;
    let gone = hook(
        &server,
        &url,
        "application/json",
        json!({"text": "x"}).to_string(),
    )
    .await;
    assert_eq!((gone.status, gone.code()), (404, "not_found"));
    // Deleted: the same, at once.
    let second = api
        .call_as(&ann, "POST", &path, Some(json!({"name": "deploys"})))
        .await;
    let second_url = second.body["url"].as_str().unwrap().to_owned();
    let sent = hook(
        &server,
        &second_url,
        "application/json",
        json!({"text": "v2"}).to_string(),
    )
    .await;
    assert_eq!(sent.status, 201);
    let id = second.body["id"].as_str().unwrap();
    let r = api
        .call_as(&ann, "DELETE", &format!("{path}/{id}"), None)
        .await;
    assert_eq!(r.status, 204);
    let gone = hook(
        &server,
        &second_url,
        "application/json",
        json!({"text": "x"}).to_string(),
    )
    .await;
    assert_eq!((gone.status, gone.code()), (404, "not_found"));
}

// ---------------------------------------------------------------- outgoing

#[tokio::test]
async fn outgoing_webhooks_are_signed_retried_and_only_hear_their_owners_rooms() {
    let server = Server::start_with(&["--webhook-allow-private"]);
    let api = server.api();
    let (receiver, origin) = Receiver::start().await;
    let [ann, bob, cyd] = api.register_each(["ann", "bob", "cyd"]).await;
    let direct = api.open_chat(&ann, &bob).await;
    let group = api.create_group(&ann, "Team", &[&bob, &cyd]).await;

    let (_, secret) = outgoing(
        &api,
        &bob,
        json!({"url": format!("{origin}/ok/bob"), "events": ["message"]}),
    )
    .await;
    let (_, mentions_secret) = outgoing(
        &api,
        &cyd,
        json!({"url": format!("{origin}/ok/cyd"), "events": ["mention"], "rooms": [group]}),
    )
    .await;
    let (_, flaky_secret) = outgoing(
        &api,
        &ann,
        json!({"url": format!("{origin}/flaky/ann"), "events": ["message"], "rooms": [direct]}),
    )
    .await;

    let sent = say(&api, &ann, &direct, "hello bob").await;
    let got = receiver.wait_for("bob", 1).await;
    assert_eq!(got.len(), 1, "bob's webhook hears ann");
    verify(&secret, &got[0]);
    assert_eq!(got[0].body["event"], "message");
    assert_eq!(got[0].body["message"]["message"], "hello bob");
    assert_eq!(got[0].body["message"]["seq"], sent["seq"]);

    // Its owner's own messages are not told to it; a failing receiver gets
    // the event again, with backoff, until it takes it.
    let started = Instant::now();
    say(&api, &bob, &direct, "hi ann").await;
    let attempts = receiver.wait_for("ann", 3).await;
    assert_eq!(attempts.len(), 3, "two failures, then accepted");
    for attempt in &attempts {
        verify(&flaky_secret, attempt);
        assert_eq!(attempt.body["id"], attempts[0].body["id"], "one event id");
        assert_eq!(attempt.body["message"]["message"], "hi ann");
    }
    assert!(attempts[1].at - attempts[0].at >= Duration::from_millis(900));
    assert!(attempts[2].at - attempts[1].at >= Duration::from_millis(1900));
    assert!(started.elapsed() < Duration::from_secs(10));

    // Mentions only: a mention of cyd, not other messages of the room.
    say(&api, &ann, &group, "hi all").await;
    say(&api, &ann, &group, "ping @cyd").await;
    let cyds = receiver.wait_for("cyd", 1).await;
    verify(&mentions_secret, &cyds[0]);
    assert_eq!(cyds[0].body["event"], "mention");
    assert_eq!(cyds[0].body["message"]["message"], "ping @cyd");
    let bobs = receiver.wait_for("bob", 3).await;
    assert_eq!(
        bobs.len(),
        3,
        "bob hears the direct one and the group's two"
    );
    assert_eq!(receiver.got("cyd").len(), 1);

    // A member no more: nothing of that room reaches the webhook. (Deliveries
    // of a receiver go in the order of the messages, so once the later
    // direct message arrives, the group's would have too.)
    api.call_as(&bob, "DELETE", &format!("/rooms/{group}/members/me"), None)
        .await;
    say(&api, &ann, &group, "bob is gone").await;
    say(&api, &ann, &direct, "still here?").await;
    let bobs = receiver.wait_for("bob", 4).await;
    assert_eq!(
        bobs.last().unwrap().body["message"]["message"],
        "still here?"
    );
    assert!(
        bobs.iter()
            .all(|r| r.body["message"]["message"] != "bob is gone")
    );

    // Listing shows no secret; deleting stops deliveries.
    let listed = api.call_as(&bob, "GET", "/webhooks", None).await;
    let hooks = listed.body["webhooks"].as_array().unwrap().clone();
    assert_eq!(hooks.len(), 1);
    assert!(hooks[0].get("secret").is_none());
    let id = hooks[0]["id"].as_str().unwrap();
    let r = api
        .call_as(&bob, "DELETE", &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!(r.status, 204);
    let r = api
        .call_as(&ann, "DELETE", &format!("/webhooks/{id}"), None)
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
}

#[tokio::test]
async fn a_delivery_is_tried_five_times_with_backoff_then_given_up() {
    let server = Server::start_with(&["--webhook-allow-private"]);
    let api = server.api();
    let (receiver, origin) = Receiver::start().await;
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let direct = api.open_chat(&ann, &bob).await;
    outgoing(
        &api,
        &bob,
        json!({"url": format!("{origin}/fail/bob"), "events": ["message"]}),
    )
    .await;
    say(&api, &ann, &direct, "are you there?").await;
    let tries = receiver.wait_for("bob", 5).await;
    assert_eq!(tries.len(), 5);
    for (n, wait) in [1, 2, 4, 8].into_iter().enumerate() {
        let gap = tries[n + 1].at - tries[n].at;
        let wait = Duration::from_secs(wait);
        assert!(
            gap >= wait - Duration::from_millis(100),
            "try {}: {gap:?}",
            n + 2
        );
        assert!(
            gap < wait + Duration::from_secs(2),
            "try {}: {gap:?}",
            n + 2
        );
    }
    assert!(tries.iter().all(|t| t.body["id"] == tries[0].body["id"]));
    // A sixth would come 16 s after the fifth.
    tokio::time::sleep(Duration::from_secs(17)).await;
    assert_eq!(receiver.got("bob").len(), 5, "given up");
}

#[tokio::test]
async fn a_bots_outgoing_webhook_hears_the_bots_rooms() {
    let server = Server::start_with(&["--webhook-allow-private"]);
    let api = server.api();
    let (receiver, origin) = Receiver::start().await;
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let bot = api
        .call_as(&ann, "POST", "/bots", Some(json!({"username": "echo"})))
        .await;
    let bot_id = bot.body["id"].as_str().unwrap().to_owned();
    let group = api
        .call_as(
            &ann,
            "POST",
            "/groups",
            Some(json!({"title": "Echo", "emails": [bob.email, "echo@bots.invalid"]})),
        )
        .await;
    let group = group.body["room_id"].as_str().unwrap().to_owned();
    let r = api
        .call_as(
            &bob,
            "POST",
            "/webhooks",
            Some(json!({"url": format!("{origin}/ok/x"), "events": ["message"], "bot_id": bot_id})),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "not bob's bot");
    let (_, secret) = outgoing(
        &api,
        &ann,
        json!({"url": format!("{origin}/ok/echo"), "events": ["message"], "bot_id": bot_id}),
    )
    .await;
    say(&api, &bob, &group, "hello echo").await;
    let got = receiver.wait_for("echo", 1).await;
    verify(&secret, &got[0]);
    assert_eq!(got[0].body["message"]["message"], "hello echo");
    let listed = api.call_as(&ann, "GET", "/webhooks", None).await;
    assert_eq!(listed.body["webhooks"][0]["owner_id"], bot_id.as_str());
}

#[tokio::test]
async fn outgoing_webhook_urls_events_and_budget() {
    let server = Server::start();
    let api = server.api();
    let [ann] = api.register_each(["ann"]).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.0.0.1/x",
        "http://[::1]/x",
        "ftp://example.com/x",
        "https://user:pw@example.com/x",
        "not a url",
    ] {
        let r = api
            .call_as(
                &ann,
                "POST",
                "/webhooks",
                Some(json!({"url": url, "events": ["message"]})),
            )
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "{url}");
    }
    for events in [json!([]), json!(["messages"]), json!("message")] {
        let r = api
            .call_as(
                &ann,
                "POST",
                "/webhooks",
                Some(json!({"url": "https://example.com/", "events": events})),
            )
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "{events}");
    }
    for n in 0..10 {
        let body = json!({"url": format!("https://example.com/{n}"), "events": ["message"]});
        outgoing(&api, &ann, body).await;
    }
    let r = api
        .call_as(
            &ann,
            "POST",
            "/webhooks",
            Some(json!({"url": "https://example.com/", "events": ["message"]})),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "too_many"));
}

#[tokio::test]
async fn a_receiver_that_is_down_does_not_slow_sends() {
    let server = Server::start_with(&["--webhook-allow-private"]);
    let api = server.api();
    let (receiver, origin) = Receiver::start().await;
    receiver.hanging.store(true, Ordering::SeqCst);
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let direct = api.open_chat(&ann, &bob).await;
    let closed = format!("http://127.0.0.1:{}/down", free_port());
    outgoing(&api, &bob, json!({"url": closed, "events": ["message"]})).await;
    outgoing(
        &api,
        &bob,
        json!({"url": format!("{origin}/hang/bob"), "events": ["message"]}),
    )
    .await;
    for n in 0..20 {
        let started = Instant::now();
        say(&api, &ann, &direct, &format!("message {n}")).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "send {n} took {:?}",
            started.elapsed()
        );
    }
    receiver.hanging.store(false, Ordering::SeqCst);
    assert_eq!(
        receiver.wait_for("bob", 20).await.len(),
        20,
        "all delivered once it answers"
    );
}

#[tokio::test]
async fn a_full_queue_drops_what_does_not_fit() {
    let server = Server::start_logging(
        &[
            "--webhook-allow-private",
            "--webhook-queue",
            "2",
            "--webhook-timeout-secs",
            "1",
        ],
        "warn",
    );
    let api = server.api();
    let (receiver, origin) = Receiver::start().await;
    receiver.hanging.store(true, Ordering::SeqCst);
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let direct = api.open_chat(&ann, &bob).await;
    outgoing(
        &api,
        &bob,
        json!({"url": format!("{origin}/hang/bob"), "events": ["message"]}),
    )
    .await;
    // Two deliveries pending (hanging), one waiting for a place, two in
    // the queue: the rest find it full.
    for n in 0..12 {
        say(&api, &ann, &direct, &format!("m{n}")).await;
    }
    receiver.hanging.store(false, Ordering::SeqCst);
    receiver.wait_for("bob", 5).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let texts: Vec<String> = receiver
        .got("bob")
        .iter()
        .map(|r| r.body["message"]["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(texts.contains(&"m0".to_owned()), "{texts:?}");
    assert!(!texts.contains(&"m11".to_owned()), "dropped: {texts:?}");
    assert!(server.log().contains("the webhook queue is full"));
}
