//! PROTOCOL.md §1, the web pages: the original app's routes, cookie session,
//! same-origin writes, escaping, and self-hosted assets.

mod common;

use common::{PASSWORD, Server, Socket, connect_error};
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use rust_socketio::TransportType;
use serde_json::json;

/// A browser-like client that does not follow redirects, so each hop is checked.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(server: &Server) -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: server.url.clone(),
            cookie: None,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send().await.unwrap()
    }

    /// Registers through the form and logs in; keeps the session cookie.
    async fn sign_up(&mut self, name: &str) -> String {
        let email = format!("{name}@example.test");
        let r = self
            .post(
                "/register",
                &[
                    ("username", name),
                    ("email", &email),
                    ("password", PASSWORD),
                ],
                None,
            )
            .await;
        assert_eq!(r.status(), 303);
        let r = self
            .post("/login", &[("email", &email), ("password", PASSWORD)], None)
            .await;
        assert_eq!(r.status(), 303);
        let set = r.headers()[SET_COOKIE].to_str().unwrap();
        self.cookie = Some(set.split(';').next().unwrap().to_owned());
        email
    }
}

fn location(r: &reqwest::Response) -> &str {
    r.headers()[LOCATION].to_str().unwrap()
}

#[tokio::test]
async fn register_then_log_in_then_out() {
    let server = Server::start();
    let mut browser = Browser::new(&server);

    let r = browser.get("/").await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/login"));
    let r = browser.get("/chat/").await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/login"));

    let page = browser.get("/register").await.text().await.unwrap();
    assert!(page.contains(r#"data-testid="register-form""#));

    // Errors re-render the form with a 4xx, the message next to the field, and the input kept.
    let r = browser
        .post(
            "/register",
            &[
                ("username", "x"),
                ("email", "alice@example.test"),
                ("password", PASSWORD),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(page.contains("username must be 3 to 32"), "{page}");
    assert!(page.contains("alice@example.test"));
    let r = browser
        .post(
            "/register",
            &[
                ("username", "alice"),
                ("email", "alice@example.test"),
                ("password", "short"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("at least 8 characters"));

    let r = browser
        .post(
            "/register",
            &[
                ("username", "alice"),
                ("email", "alice@example.test"),
                ("password", PASSWORD),
            ],
            None,
        )
        .await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/login"));
    let flash = r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = browser
        .post(
            "/register",
            &[
                ("username", "alice"),
                ("email", "other@example.test"),
                ("password", PASSWORD),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 409);

    let login_page = browser
        .http
        .get(format!("{}/login", browser.base))
        .header("cookie", &flash)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        login_page.contains(r#"data-testid="flash""#),
        "the flash message is shown"
    );
    assert!(login_page.contains(r#"data-testid="login-form""#));

    let r = browser
        .post(
            "/login",
            &[
                ("email", "alice@example.test"),
                ("password", "wrong password"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("wrong email or password"));
    let r = browser
        .post(
            "/login",
            &[("email", "nobody@example.test"), ("password", PASSWORD)],
            None,
        )
        .await;
    assert_eq!(r.status(), 401, "an unknown email gets the same answer");

    let r = browser
        .post(
            "/login",
            &[("email", "ALICE@example.test"), ("password", PASSWORD)],
            None,
        )
        .await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/chat/"));
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
        "{set}"
    );
    assert!(
        !set.contains("Secure"),
        "plain http on loopback: not Secure"
    );
    browser.cookie = Some(set.split(';').next().unwrap().to_owned());

    let r = browser.get("/").await;
    assert_eq!(location(&r), "/chat/");
    let r = browser.get("/chat/").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    for hook in ["chat-list", "new-chat-form", "logout-button"] {
        assert!(page.contains(&format!(r#"data-testid="{hook}""#)), "{hook}");
    }

    let r = browser.post("/logout", &[], None).await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/login"));
    let r = browser.get("/chat/").await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/login"),
        "the old cookie is revoked"
    );
}

#[tokio::test]
async fn session_cookie_is_secure_behind_https() {
    let server = Server::start();
    server.api().register("alice").await;
    let r = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/login", server.url))
        .header("x-forwarded-proto", "https")
        .form(&[("email", "alice@example.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(r.headers()[SET_COOKIE].to_str().unwrap().contains("Secure"));
}

#[tokio::test]
async fn add_a_contact_and_read_the_room() {
    let server = Server::start();
    let mut alice = Browser::new(&server);
    let mut bob = Browser::new(&server);
    let mut carol = Browser::new(&server);
    alice.sign_up("alice").await;
    let bob_email = bob.sign_up("bob").await;
    carol.sign_up("carol").await;

    let r = alice
        .post("/new-chat", &[("email", "nobody@example.test")], None)
        .await;
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Nobody has registered with that email")
    );
    let r = alice
        .post("/new-chat", &[("email", "alice@example.test")], None)
        .await;
    assert_eq!(r.status(), 422);
    let r = alice
        .post("/new-chat", &[("email", &bob_email)], None)
        .await;
    assert_eq!(r.status(), 303);
    let to_room = location(&r).to_owned();
    assert!(to_room.starts_with("/chat/?rid="));
    let rid = to_room.trim_start_matches("/chat/?rid=").to_owned();
    let r = alice
        .post("/new-chat", &[("email", &bob_email)], None)
        .await;
    assert_eq!(location(&r), to_room, "adding twice opens the same room");

    // A message that looks like HTML is shown as text, never as markup.
    let api = server.api();
    let creds = json!({"email": "alice@example.test", "password": PASSWORD});
    let token = api.call("POST", "/sessions", Some(creds), None).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let xss = "<img src=x onerror=alert(1)>";
    for text in ["hello", xss] {
        let r = api
            .call(
                "POST",
                &format!("/rooms/{rid}/messages"),
                Some(json!({"message": text})),
                Some(&token),
            )
            .await;
        assert_eq!(r.status, 201);
    }

    let page = bob.get(&to_room).await.text().await.unwrap();
    assert!(page.contains(r#"data-testid="message-history""#));
    assert!(page.contains(r#"data-testid="message-form""#) && page.contains(r#"name="message""#));
    assert!(page.contains(r#"data-seq="1""#) && page.contains(r#"data-seq="2""#));
    assert!(page.contains(&format!(r#"data-rid="{rid}""#)));
    assert!(
        !page.contains(xss),
        "raw HTML from a message reached the page"
    );
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;") || page.contains("&#60;img"),
        "escaped text shown"
    );

    let r = carol.get(&to_room).await;
    assert_eq!(r.status(), 403, "not a member");
    let page = r.text().await.unwrap();
    assert!(!page.contains("hello"));
    let r = carol.get("/chat/?rid=nope").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn cross_origin_writes_are_refused() {
    let server = Server::start();
    let mut alice = Browser::new(&server);
    alice.sign_up("alice").await;
    let mut bob = Browser::new(&server);
    let bob_email = bob.sign_up("bob").await;

    let r = alice
        .post(
            "/new-chat",
            &[("email", &bob_email)],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = alice
        .post("/logout", &[], Some("http://evil.example"))
        .await;
    assert_eq!(r.status(), 403);
    let r = alice.post("/logout", &[], Some("null")).await;
    assert_eq!(r.status(), 403);
    // Nothing happened: no chat was opened and the session is alive.
    let page = alice.get("/chat/").await.text().await.unwrap();
    assert!(!page.contains(r#"data-testid="chat-item""#));
    // The same request from our own origin works.
    let r = alice
        .post("/new-chat", &[("email", &bob_email)], Some(&server.url))
        .await;
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn browser_sockets_authenticate_with_the_cookie_from_our_origin_only() {
    let server = Server::start();
    let mut alice = Browser::new(&server);
    alice.sign_up("alice").await;
    let cookie = alice.cookie.clone().unwrap();

    let evil = connect_error_with_headers(&server.url, &cookie, "http://evil.example").await;
    assert!(evil.contains("unauthorized"), "{evil}");

    let socket = socket_with_cookie(&server.url, &cookie, &server.url).await;
    let ack = socket.ack("join-chat", json!({"rid": "nope"})).await;
    assert_eq!(
        ack["error"]["code"], "no_such_room",
        "authenticated, then refused by the room rule"
    );
    socket.close().await;
    assert!(
        connect_error(&server.url, json!({}))
            .await
            .contains("unauthorized")
    );
}

async fn connect_error_with_headers(url: &str, cookie: &str, origin: &str) -> String {
    common::connect_error_with(url, json!({}), &[("Cookie", cookie), ("Origin", origin)]).await
}

async fn socket_with_cookie(url: &str, cookie: &str, origin: &str) -> Socket {
    Socket::connect_with_headers(
        url,
        json!({}),
        TransportType::Websocket,
        &[("Cookie", cookie), ("Origin", origin)],
    )
    .await
}

#[tokio::test]
async fn assets_are_self_hosted_and_pages_carry_security_headers() {
    let server = Server::start();
    let mut alice = Browser::new(&server);
    alice.sign_up("alice").await;
    let page_response = alice.get("/chat/").await;
    let csp = page_response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page_response.headers()["x-frame-options"], "DENY");
    assert!(page_response.headers().contains_key("referrer-policy"));
    let page = page_response.text().await.unwrap();
    for asset in [
        "/static/app.css",
        "/static/chat.js",
        "/static/vendor/socket.io.min.js",
    ] {
        assert!(page.contains(asset), "{asset} linked");
        let r = alice.get(asset).await;
        assert_eq!(r.status(), 200, "{asset}");
    }
    assert_eq!(
        alice.get("/static/app.css").await.headers()["content-type"],
        "text/css"
    );
    assert!(!page.contains("<script>"), "no inline scripts");
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !page.contains(external),
            "no asset from another host: {external}"
        );
    }
    assert_eq!(alice.get("/static/nope.js").await.status(), 404);
}
