//! Web Push (docs/protocol.md, "Web Push"): the server's key, the
//! subscriptions, and the pushes themselves. The push service is the test's
//! own, on loopback: it checks each push's VAPID signature against the key
//! the server publishes, and decrypts the payload as a browser would, with
//! RFC 8291/8188 written out here rather than taken from the server's crate.
//!
//! Proving that a push was NOT sent needs no fixed sleep: the server handles
//! its queue one batch after another, each batch's pushes all answered
//! before the next batch starts. So once a push for a message sent LATER
//! arrives, every push of the earlier message has arrived too, if there was one.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead as _, KeyInit as _};
use aes_gcm::{Aes128Gcm, Nonce};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Api, Reply, Server, Socket, TestUser, free_port};
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::{Value, json};
use sha2::Sha256;

// ------------------------------------------------------------ push service

/// One push as the push service received it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// A push service on loopback. `POST /push/{name}` is answered 201 Created,
/// as real ones do; `/gone/{name}` 410, `/missing/{name}` 404 and
/// `/fail/{name}` 500. It keeps every request.
struct PushService {
    origin: String,
    inbox: Inbox,
}

impl PushService {
    async fn start() -> PushService {
        let inbox: Inbox = Arc::default();
        let app = Router::new()
            .route("/{kind}/{name}", post(receive))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        PushService { origin, inbox }
    }

    /// The endpoint a browser would be given: `kind` says how it answers.
    fn endpoint(&self, kind: &str, name: &str) -> String {
        format!("{}/{kind}/{name}", self.origin)
    }

    fn received(&self, endpoint: &str) -> Vec<Received> {
        let path = endpoint.strip_prefix(&self.origin).unwrap();
        let inbox = self.inbox.lock().unwrap();
        inbox.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Waits (10 s at most) until `endpoint` got `count` pushes; returns them.
    async fn wait_for(&self, endpoint: &str, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.received(endpoint);
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{endpoint} got {} of {count} pushes within 10 s",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(inbox): State<Inbox>,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    inbox.lock().unwrap().push(Received {
        path: format!("/{kind}/{name}"),
        headers,
        body: body.to_vec(),
    });
    match kind.as_str() {
        "gone" => StatusCode::GONE,
        "missing" => StatusCode::NOT_FOUND,
        "fail" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CREATED,
    }
}

// ----------------------------------------------------------------- browser

fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// A browser's half of a subscription: its key pair and auth secret.
struct Browser {
    endpoint: String,
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new(endpoint: String) -> Browser {
        let secret = loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).unwrap();
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                break secret;
            }
        };
        let mut auth = [0u8; 16];
        getrandom::fill(&mut auth).unwrap();
        Browser {
            endpoint,
            secret,
            auth,
        }
    }

    /// Its public key, uncompressed.
    fn public_key(&self) -> Vec<u8> {
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// What `pushManager.subscribe` gives a page, as JSON.
    fn subscription(&self) -> Value {
        json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": {
                "p256dh": URL_SAFE_NO_PAD.encode(self.public_key()),
                "auth": URL_SAFE_NO_PAD.encode(self.auth),
            },
        })
    }

    /// Decrypts a push's body (RFC 8291 keys, RFC 8188 `aes128gcm`) and reads its JSON.
    fn decrypt(&self, body: &[u8]) -> Value {
        // The header: salt (16), record size (4), key id length (1), key id:
        // the server's one-time public key.
        let (salt, rest) = body.split_at(16);
        let record_size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let id_len = usize::from(rest[4]);
        let (server_key, record) = rest[5..].split_at(id_len);
        assert_eq!(id_len, 65, "the key id is an uncompressed P-256 point");
        assert!(record.len() <= record_size, "one record");
        let server_key_point = p256::PublicKey::from_sec1_bytes(server_key).unwrap();
        let shared = p256::ecdh::diffie_hellman(
            self.secret.to_nonzero_scalar(),
            server_key_point.as_affine(),
        );
        // RFC 8291 §3.4: the input keying material, from the shared secret
        // and the auth secret, bound to both public keys.
        let mut key_info = b"WebPush: info\0".to_vec();
        key_info.extend(self.public_key());
        key_info.extend(server_key);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), &shared.raw_secret_bytes()[..])
            .expand(&key_info, &mut ikm)
            .unwrap();
        // RFC 8188 §2.2, §2.3: the content key and the nonce, from the salt.
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let mut key = [0u8; 16];
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut key)
            .unwrap();
        let mut nonce = [0u8; 12];
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
            .unwrap();
        let plain = Aes128Gcm::new_from_slice(&key)
            .unwrap()
            .decrypt(&Nonce::from(nonce), record)
            .expect("the push decrypts with the browser's keys");
        // The last record: the data, the delimiter 2, then padding zeros.
        let end = plain.iter().rposition(|&b| b != 0).unwrap();
        assert_eq!(plain[end], 2, "the last record's delimiter");
        serde_json::from_slice(&plain[..end]).expect("a JSON payload")
    }
}

/// Checks a push's headers: its VAPID signature (RFC 8292) by `server_key`
/// for the push service's origin, valid now and for no more than a day,
/// and the TTL, urgency and encoding the server promises.
fn check_signed(push: &Received, server_key: &str, origin: &str) {
    let header = |name: &str| push.headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("ttl"), "86400");
    assert_eq!(header("urgency"), "high");
    assert_eq!(header("content-encoding"), "aes128gcm");
    let authorization = header("authorization");
    let (token, k) = authorization
        .strip_prefix("vapid t=")
        .and_then(|rest| rest.split_once(", k="))
        .unwrap_or_else(|| panic!("not vapid t=…, k=…: {authorization}"));
    assert_eq!(k, server_key, "signed with the key the server publishes");
    let (signed, signature) = token.rsplit_once('.').unwrap();
    VerifyingKey::from_sec1_bytes(&b64(k))
        .unwrap()
        .verify(
            signed.as_bytes(),
            &Signature::from_slice(&b64(signature)).unwrap(),
        )
        .expect("an ES256 signature by the server's key");
    let (head, claims) = signed.split_once('.').unwrap();
    let head: Value = serde_json::from_slice(&b64(head)).unwrap();
    assert_eq!(head["alg"], "ES256");
    let claims: Value = serde_json::from_slice(&b64(claims)).unwrap();
    assert_eq!(
        claims["aud"], origin,
        "the push service's origin, port and all"
    );
    assert_eq!(claims["sub"], "mailto:admin@localhost");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp > now && exp <= now + 24 * 3600, "exp {exp}, now {now}");
}

// ----------------------------------------------------------------- helpers

/// A server that may push to the test's loopback push service.
fn server(extra: &[&str]) -> Server {
    let mut flags = vec!["--push-allow-http"];
    flags.extend(extra);
    Server::start_with(&flags)
}

async fn subscribe(api: &Api, user: &TestUser, browser: &Browser) -> Reply {
    let body = Some(browser.subscription());
    api.call_as(user, "POST", "/push/subscriptions", body).await
}

/// Subscribes `user`'s `browser`, which must be accepted as new.
async fn subscribed(api: &Api, user: &TestUser, browser: &Browser) {
    let r = subscribe(api, user, browser).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

/// A browser of `user` (`name` in its endpoint) on the test's push service, subscribed.
async fn browser_of(service: &PushService, api: &Api, user: &TestUser, name: &str) -> Browser {
    let browser = Browser::new(service.endpoint("push", name));
    subscribed(api, user, &browser).await;
    browser
}

async fn subscriptions(api: &Api, user: &TestUser) -> Vec<Value> {
    let r = api.call_as(user, "GET", "/push/subscriptions", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["subscriptions"].as_array().unwrap().clone()
}

async fn server_key(api: &Api, user: &TestUser) -> String {
    let r = api.call_as(user, "GET", "/push/key", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["public_key"].as_str().unwrap().to_owned()
}

/// `user` sends `text` to room `rid` over the API; the message as stored.
async fn say(api: &Api, user: &TestUser, rid: &str, text: &str) -> Value {
    let path = format!("/rooms/{rid}/messages");
    let r = api
        .call_as(user, "POST", &path, Some(json!({ "message": text })))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

/// `user` sets their notification level in room `rid`.
async fn set_notify(api: &Api, user: &TestUser, rid: &str, level: &str) {
    let path = format!("/rooms/{rid}/notify");
    let r = api
        .call_as(user, "PUT", &path, Some(json!({ "notify": level })))
        .await;
    assert_eq!((r.status, r.body["notify"].as_str()), (200, Some(level)));
}

/// The decrypted payloads `browser` received.
fn payloads(service: &PushService, browser: &Browser) -> Vec<Value> {
    service
        .received(&browser.endpoint)
        .iter()
        .map(|push| browser.decrypt(&push.body))
        .collect()
}

// ------------------------------------------------------------------- cases

#[tokio::test]
async fn a_message_to_someone_away_is_pushed_to_them_signed_and_encrypted() {
    let service = PushService::start().await;
    let server = server(&[]);
    let api = server.api();
    let [ann, ben] = api.register_each(["ann", "ben"]).await;
    let rid = api.open_chat(&ann, &ben).await;
    let key = server_key(&api, &ben).await;
    assert_eq!(b64(&key).len(), 65, "an uncompressed P-256 point");
    assert_eq!(b64(&key)[0], 4);

    let browser = Browser::new(service.endpoint("push", "ben"));
    let created = subscribe(&api, &ben, &browser).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["endpoint"], browser.endpoint.as_str());
    assert!(created.body["id"].is_string(), "{:?}", created.body);
    assert!(created.body["created_at"].is_f64(), "{:?}", created.body);
    // The same browser again: the same subscription.
    let again = subscribe(&api, &ben, &browser).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["id"], created.body["id"]);
    assert_eq!(subscriptions(&api, &ben).await, vec![again.body.clone()]);
    assert!(subscriptions(&api, &ann).await.is_empty(), "one's own only");

    let sent = say(&api, &ann, &rid, "hello ben").await;
    let push = service.wait_for(&browser.endpoint, 1).await.remove(0);
    check_signed(&push, &key, &service.origin);
    assert_eq!(
        browser.decrypt(&push.body),
        json!({
            "type": "message",
            "rid": rid,
            "seq": sent["seq"],
            "title": "ann",
            "body": "hello ben",
            "url": format!("/chat/?rid={rid}"),
        })
    );

    // A long text is cut to 1,000 bytes, at a character.
    let long = say(&api, &ann, &rid, &"é".repeat(700)).await;
    service.wait_for(&browser.endpoint, 2).await;
    let payload = payloads(&service, &browser)
        .into_iter()
        .find(|p| p["seq"] == long["seq"])
        .unwrap();
    let body = payload["body"].as_str().unwrap();
    assert!(body.len() <= 1000, "{} bytes", body.len());
    assert!(body.starts_with("éé") && body.ends_with('…'), "{body}");
}

#[tokio::test]
async fn a_muted_chat_pushes_nothing_until_it_is_unmuted() {
    let service = PushService::start().await;
    let server = server(&[]);
    let api = server.api();
    let [ann, ben, wit] = api.register_each(["ann", "ben", "wit"]).await;
    let to_ben = api.open_chat(&ann, &ben).await;
    let to_wit = api.open_chat(&ann, &wit).await;
    let bens = browser_of(&service, &api, &ben, "ben").await;
    let wits = browser_of(&service, &api, &wit, "wit").await;

    set_notify(&api, &ben, &to_ben, "none").await;
    say(&api, &ann, &to_ben, "muted").await;
    // A later message's push: the muted one's batch is decided by then.
    say(&api, &ann, &to_wit, "witness").await;
    service.wait_for(&wits.endpoint, 1).await;

    set_notify(&api, &ben, &to_ben, "all").await;
    let unmuted = say(&api, &ann, &to_ben, "unmuted").await;
    service.wait_for(&bens.endpoint, 1).await;
    let got = payloads(&service, &bens);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (&got[0]["body"], &got[0]["seq"]),
        (&json!("unmuted"), &unmuted["seq"])
    );
}

#[tokio::test]
async fn a_group_pushes_mentions_only_unless_the_member_chose_all() {
    let service = PushService::start().await;
    let server = server(&[]);
    let api = server.api();
    let [ann, ben, cyd] = api.register_each(["ann", "ben", "cyd"]).await;
    let group = api.create_group(&ann, "Crew", &[&ben, &cyd]).await;
    let bens = browser_of(&service, &api, &ben, "ben").await;
    let cyds = browser_of(&service, &api, &cyd, "cyd").await;
    // Ben stays at the group's default (mentions); cyd wants everything.
    set_notify(&api, &cyd, &group, "all").await;

    let plain = say(&api, &ann, &group, "lunch at noon").await;
    let cyds_first = service.wait_for(&cyds.endpoint, 1).await.remove(0);
    assert_eq!(cyds.decrypt(&cyds_first.body)["seq"], plain["seq"]);

    let mention = say(&api, &ann, &group, "@Ben, you too?").await;
    service.wait_for(&bens.endpoint, 1).await;
    let got = payloads(&service, &bens);
    assert_eq!(got.len(), 1, "the plain message reached ben: {got:?}");
    assert_eq!(got[0]["seq"], mention["seq"]);
    assert_eq!(got[0]["title"], "ann in Crew");
    assert_eq!(got[0]["body"], "@Ben, you too?");
    service.wait_for(&cyds.endpoint, 2).await;
}

#[tokio::test]
async fn someone_with_a_socket_open_gets_no_push() {
    let service = PushService::start().await;
    let server = server(&[]);
    let api = server.api();
    let [ann, ben, wit] = api.register_each(["ann", "ben", "wit"]).await;
    let to_ben = api.open_chat(&ann, &ben).await;
    let to_wit = api.open_chat(&ann, &wit).await;
    let bens = browser_of(&service, &api, &ben, "ben").await;
    let wits = browser_of(&service, &api, &wit, "wit").await;
    let tab = Socket::connect(&server.url, &ben.token).await;

    say(&api, &ann, &to_ben, "you are looking").await;
    tab.hears("you are looking").await;
    // Two later pushes: the second is of a batch after the one that held
    // ben's message, which was all answered by then.
    say(&api, &ann, &to_wit, "first witness").await;
    service.wait_for(&wits.endpoint, 1).await;
    say(&api, &ann, &to_wit, "second witness").await;
    service.wait_for(&wits.endpoint, 2).await;
    assert!(
        service.received(&bens.endpoint).is_empty(),
        "ben's tab is open"
    );
    tab.close().await;
}

/// The value of an unlabelled metric in a Prometheus text page (0 if absent).
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn a_gone_subscription_is_deleted_and_a_failure_is_counted_not_retried() {
    let service = PushService::start().await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = server(&["--metrics-addr", &metrics]);
    let api = server.api();
    let [ann, ben] = api.register_each(["ann", "ben"]).await;
    let rid = api.open_chat(&ann, &ben).await;
    let gone = Browser::new(service.endpoint("gone", "ben"));
    let missing = Browser::new(service.endpoint("missing", "ben"));
    let failing = Browser::new(service.endpoint("fail", "ben"));
    for browser in [&gone, &missing, &failing] {
        subscribed(&api, &ben, browser).await;
    }

    say(&api, &ann, &rid, "anyone there?").await;
    for browser in [&gone, &missing, &failing] {
        service.wait_for(&browser.endpoint, 1).await;
    }
    // 410 and 404: deleted. 500: kept.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = subscriptions(&api, &ben).await;
        let left: Vec<&str> = left
            .iter()
            .map(|s| s["endpoint"].as_str().unwrap())
            .collect();
        if left == [failing.endpoint.as_str()] {
            break;
        }
        assert!(Instant::now() < deadline, "still subscribed: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scrape = || async {
        reqwest::get(format!("http://{metrics}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = scrape().await;
        let counts = (
            metric(&page, "natter_push_subscriptions_removed_total"),
            metric(&page, "natter_pushes_failed_total"),
        );
        if counts == (2.0, 1.0) {
            assert_eq!(metric(&page, "natter_pushes_sent_total"), 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "removed, failed: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Pushing on: the failed push is not tried again.
    let working = Browser::new(service.endpoint("push", "ben"));
    subscribed(&api, &ben, &working).await;
    let second = say(&api, &ann, &rid, "still there?").await;
    service.wait_for(&working.endpoint, 1).await;
    let tried: Vec<Value> = service
        .wait_for(&failing.endpoint, 2)
        .await
        .iter()
        .map(|push| failing.decrypt(&push.body)["seq"].clone())
        .collect();
    assert_eq!(tried.len(), 2, "{tried:?}");
    assert!(
        tried[0] != tried[1] && tried.contains(&second["seq"]),
        "one try per message: {tried:?}"
    );
}

#[tokio::test]
async fn subscriptions_are_checked_and_a_refused_one_stores_nothing() {
    // No --push-allow-http: what a server in production accepts.
    let server = Server::start();
    let api = server.api();
    let [ann, ben] = api.register_each(["ann", "ben"]).await;
    let browser = Browser::new("https://push.example.test/subscription/1".into());
    let good = browser.subscription();
    let with = |path: &[&str], value: Value| {
        let mut body = good.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut body;
        for parent in parents {
            at = &mut at[*parent];
        }
        at[*last] = value;
        body
    };
    let not_on_curve = URL_SAFE_NO_PAD.encode([4u8; 65]);
    let long = format!("https://push.example.test/{}", "x".repeat(2048));
    let cases = [
        (
            with(&["endpoint"], json!("http://push.example.test/1")),
            "https URL",
        ),
        (
            with(&["endpoint"], json!("http://127.0.0.1:9/1")),
            "https URL",
        ),
        (
            with(&["endpoint"], json!("https://127.0.0.1/1")),
            "not a local or private address",
        ),
        (
            with(&["endpoint"], json!("https://localhost/1")),
            "not a local or private address",
        ),
        (
            with(&["endpoint"], json!("https://10.0.0.1/1")),
            "not a local or private address",
        ),
        (
            with(&["endpoint"], json!("https://169.254.169.254/1")),
            "not a local or private address",
        ),
        (with(&["endpoint"], json!(long)), "2,048 bytes"),
        (with(&["endpoint"], json!(7)), "2,048 bytes"),
        (
            with(&["endpoint"], json!("push.example.test")),
            "must be a URL",
        ),
        (with(&["keys", "p256dh"], json!(not_on_curve)), "P-256"),
        (with(&["keys", "p256dh"], json!("not base64!")), "P-256"),
        (
            with(&["keys", "auth"], json!(URL_SAFE_NO_PAD.encode([1u8; 15]))),
            "16 bytes",
        ),
        (with(&["keys"], json!(null)), "P-256"),
        (json!([]), "endpoint"),
    ];
    for (body, why) in cases {
        let r = api
            .call_as(&ben, "POST", "/push/subscriptions", Some(body.clone()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (422, "invalid"),
            "{body}: {:?}",
            r.body
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: {message}");
    }
    assert!(
        subscriptions(&api, &ben).await.is_empty(),
        "refusals store nothing"
    );

    // At most 10 per user: the eleventh replaces the oldest.
    let first = subscribe(&api, &ben, &browser).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    for n in 2..=11 {
        let more = Browser::new(format!("https://push.example.test/subscription/{n}"));
        subscribed(&api, &ben, &more).await;
    }
    let kept = subscriptions(&api, &ben).await;
    assert_eq!(kept.len(), 10);
    assert_eq!(
        kept[0]["endpoint"], "https://push.example.test/subscription/11",
        "newest first"
    );
    assert!(
        kept.iter().all(|s| s["id"] != first.body["id"]),
        "the oldest went"
    );

    // Deleted by their owner only.
    let id = kept[0]["id"].as_str().unwrap();
    let path = format!("/push/subscriptions/{id}");
    for (who, path) in [(&ann, path.as_str()), (&ben, "/push/subscriptions/nope")] {
        let r = api.call_as(who, "DELETE", path, None).await;
        assert_eq!(
            (r.status, r.code()),
            (404, "not_found"),
            "{path}: {:?}",
            r.body
        );
    }
    let r = api.call_as(&ben, "DELETE", &path, None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(subscriptions(&api, &ben).await.len(), 9);

    // Signed-in only.
    for (method, path) in [
        ("GET", "/push/key"),
        ("GET", "/push/subscriptions"),
        ("POST", "/push/subscriptions"),
        ("DELETE", path.as_str()),
    ] {
        let body = (method == "POST").then(|| good.clone());
        let r = api.call(method, path, body, None).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "unauthorized"),
            "{method} {path}"
        );
    }

    // A subscription lasts as long as the session that made it.
    let laptop = api.new_session(&ann).await;
    let bens_tenth = Browser::new("https://push.example.test/subscription/10".into());
    let r = api
        .call(
            "POST",
            "/push/subscriptions",
            Some(bens_tenth.subscription()),
            Some(&laptop),
        )
        .await;
    assert_eq!(r.status, 200, "taken over from ben: {:?}", r.body);
    assert_eq!(subscriptions(&api, &ann).await.len(), 1);
    assert_eq!(subscriptions(&api, &ben).await.len(), 8);
    let r = api
        .call("DELETE", "/sessions/current", None, Some(&laptop))
        .await;
    assert_eq!(r.status, 204);
    assert!(subscriptions(&api, &ann).await.is_empty(), "logged out");
}

#[tokio::test]
async fn the_key_comes_from_the_server_secret() {
    let server = Server::start();
    let api = server.api();
    let ann = api.register("ann").await;
    let key = server_key(&api, &ann).await;
    // Restarted on its data: the same secret, the same key.
    let data = server.stop();
    let again = Server::start_in(data, &[]);
    let api = again.api();
    let token = api.new_session(&ann).await;
    let r = api.call("GET", "/push/key", None, Some(&token)).await;
    assert_eq!(r.body["public_key"], key.as_str());
    // Another server, another secret.
    let other = Server::start();
    let bea = other.api().register("bea").await;
    assert_ne!(server_key(&other.api(), &bea).await, key);
}
