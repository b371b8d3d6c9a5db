//! PROTOCOL.md §1, the web pages: the original app's routes, cookie session,
//! same-origin writes, escaping, and self-hosted assets.

mod common;

use common::{PASSWORD, Server, Socket, TestUser, connect_error};
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
        self.log_in(&email).await;
        email
    }

    /// Logs in through the form; keeps the session cookie.
    async fn log_in(&mut self, email: &str) {
        let r = self
            .post("/login", &[("email", email), ("password", PASSWORD)], None)
            .await;
        assert_eq!(r.status(), 303);
        let set = r.headers()[SET_COOKIE].to_str().unwrap();
        self.cookie = Some(set.split(';').next().unwrap().to_owned());
    }

    async fn page(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().await.unwrap()
    }
}

/// Text as askama escapes it into a page (enough for the angle brackets these tests use).
fn escaped(text: &str) -> String {
    text.replace('<', "&#60;").replace('>', "&#62;")
}

/// The `<li>` of message `seq` in a chat page.
fn message_li(page: &str, seq: i64) -> &str {
    let start = page
        .find(&format!(r#"data-testid="message" data-seq="{seq}""#))
        .unwrap_or_else(|| panic!("message {seq} is not on the page"));
    let start = page[..start].rfind("<li").unwrap();
    let end = start + page[start..].find("</li>").unwrap();
    &page[start..end]
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
    // Only a trusted proxy's word counts: a client's own header changes nothing.
    for (flags, secure) in [
        (&["--trusted-proxies", "127.0.0.0/8"][..], true),
        (&[][..], false),
    ] {
        let server = Server::start_with(flags);
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
        let cookie = r.headers()[SET_COOKIE].to_str().unwrap();
        assert_eq!(cookie.contains("Secure"), secure, "{flags:?}: {cookie}");
        // The one-time notice after signing up follows the same rule.
        let r = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap()
            .post(format!("{}/register", server.url))
            .header("x-forwarded-proto", "https")
            .form(&[
                ("username", "bob"),
                ("email", "bob@example.test"),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        let flash = r.headers()[SET_COOKIE].to_str().unwrap();
        assert!(flash.starts_with("natter_flash="), "{flash}");
        assert_eq!(flash.contains("Secure"), secure, "{flags:?}: {flash}");
    }
}

#[tokio::test]
async fn the_account_page_changes_the_password_and_signs_devices_out() {
    let server = Server::start();
    let mut laptop = Browser::new(&server);
    let email = laptop.sign_up("alice").await;
    let mut phone = Browser::new(&server);
    phone.log_in(&email).await;
    let origin = server.url.clone();

    // Both sessions are listed, this one marked; the chat page links here.
    assert!(laptop.page("/chat/").await.contains("href=\"/account\""));
    let page = laptop.page("/account").await;
    assert!(
        page.contains("data-testid=\"account-username\">alice<"),
        "{page}"
    );
    assert_eq!(page.matches("data-testid=\"session\"").count(), 2);
    assert_eq!(page.matches("This browser").count(), 1);
    assert_eq!(page.matches("data-testid=\"end-session\"").count(), 1);

    // A wrong current password: said on the page, nothing changes.
    let form = [
        ("current_password", "not it at all"),
        ("new_password", "a brand new one"),
    ];
    let r = laptop.post("/account/password", &form, Some(&origin)).await;
    assert_eq!(r.status(), 422);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("data-testid=\"password-error\"")
    );
    assert_eq!(phone.get("/account").await.status(), 200);
    // Another site cannot do it for me.
    let form = [
        ("current_password", PASSWORD),
        ("new_password", "a brand new one"),
    ];
    let r = laptop
        .post("/account/password", &form, Some("https://evil.example"))
        .await;
    assert_eq!(r.status(), 403);

    let r = laptop.post("/account/password", &form, Some(&origin)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/account");
    let notice = r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let cookie = laptop.cookie.clone().unwrap();
    laptop.cookie = Some(format!("{cookie}; {notice}"));
    let page = laptop.page("/account").await;
    assert!(page.contains("Your password is changed"), "{page}");
    assert_eq!(page.matches("data-testid=\"session\"").count(), 1);
    laptop.cookie = Some(cookie);
    // The phone is signed out; the laptop is not.
    let r = phone.get("/account").await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/login"));
    assert_eq!(laptop.get("/chat/").await.status(), 200);

    // Signing a device out from the list.
    let mut tablet = Browser::new(&server);
    let r = tablet
        .post(
            "/login",
            &[("email", &email), ("password", "a brand new one")],
            None,
        )
        .await;
    assert_eq!(r.status(), 303);
    tablet.cookie = Some(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned(),
    );
    let page = laptop.page("/account").await;
    let at = page
        .find("action=\"/account/sessions/")
        .expect("a sign-out form");
    let id = &page[at + "action=\"/account/sessions/".len()..];
    let id = &id[..id.find('/').unwrap()];
    let r = laptop
        .post(&format!("/account/sessions/{id}/end"), &[], Some(&origin))
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(tablet.get("/account").await.status(), 303);
    assert_eq!(laptop.get("/account").await.status(), 200);
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

#[tokio::test]
async fn the_new_group_form_creates_a_group() {
    let server = Server::start();
    let mut alice = Browser::new(&server);
    let mut bob = Browser::new(&server);
    alice.sign_up("alice").await;
    let bob_email = bob.sign_up("bob").await;
    let mut carol = Browser::new(&server);
    carol.sign_up("carol").await;

    let page = alice.page("/chat/").await;
    assert!(page.contains(r#"data-testid="new-group-form""#));

    // An unknown email refuses the whole group; the form keeps what was typed.
    let r = alice
        .post(
            "/new-group",
            &[
                ("title", "Book club"),
                ("emails", "bob@example.test, nobody@example.test"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    let page = r.text().await.unwrap();
    assert!(page.contains("Nobody has registered with one of those emails"));
    assert!(page.contains("nobody@example.test") && page.contains(r#"value="Book club""#));
    assert!(
        !page.contains(r#"data-testid="chat-item""#),
        "nothing was created"
    );
    let r = alice
        .post("/new-group", &[("title", "   "), ("emails", "")], None)
        .await;
    assert_eq!(r.status(), 422, "a title is required");
    let r = alice
        .post(
            "/new-group",
            &[("title", "Evil"), ("emails", "")],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(r.status(), 403, "cross-origin");

    // Spaces and empty items between the commas are ignored.
    let title = "<b>Book</b> club";
    let emails = format!(" {bob_email} ,, ");
    let r = alice
        .post("/new-group", &[("title", title), ("emails", &emails)], None)
        .await;
    assert_eq!(r.status(), 303);
    let to_room = location(&r).to_owned();
    assert!(to_room.starts_with("/chat/?rid="), "{to_room}");
    for who in [&alice, &bob] {
        let page = who.page(&to_room).await;
        assert!(page.contains(r#"data-kind="group""#));
        assert!(
            page.contains(&escaped("<b>Book</b> club")),
            "the title, escaped"
        );
        assert!(
            !page.contains("<b>Book</b>"),
            "raw HTML from a title reached the page"
        );
        let notice = message_li(&page, 1);
        assert!(notice.contains("message system"), "{notice}");
        assert!(notice.contains("alice created the group"), "{notice}");
        assert!(page.contains(r#"data-testid="member-list""#));
        assert!(
            page.contains(r#"data-username="alice""#) && page.contains(r#"data-username="bob""#)
        );
        assert!(page.contains(r#"data-testid="leave-group""#));
    }
    let rid = to_room.trim_start_matches("/chat/?rid=");
    // Only the owner adds members.
    let owner_only = r#"data-testid="add-member-form" hidden"#;
    assert!(!alice.page(&to_room).await.contains(owner_only));
    assert!(bob.page(&to_room).await.contains(owner_only));
    let r = carol.get(&to_room).await;
    assert_eq!(r.status(), 403, "carol is not in the group");
    // The group is in each member's chat list.
    let list = bob.page("/chat/").await;
    assert!(
        list.contains(&format!(r#"data-rid="{rid}" data-kind="group""#)),
        "{list}"
    );
}

async fn token_of(server: &Server, name: &str) -> TestUser {
    server.api().register(name).await
}

#[tokio::test]
async fn edits_deletions_replies_and_reactions_render_escaped() {
    let server = Server::start();
    let api = server.api();
    let alice = token_of(&server, "alice").await;
    let bob = token_of(&server, "bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    let messages = format!("/rooms/{rid}/messages");
    let send = |body: serde_json::Value| {
        let (api, messages, token) = (&api, &messages, alice.token.clone());
        async move {
            let r = api.call("POST", messages, Some(body), Some(&token)).await;
            assert_eq!(r.status, 201, "{:?}", r.body);
        }
    };
    send(json!({"message": "gone soon"})).await;
    send(json!({"message": "<i>first</i>"})).await;
    send(json!({"message": "<script>x()</script> a reply", "reply_to": 2})).await;
    let r = api
        .call(
            "PATCH",
            &format!("{messages}/2"),
            Some(json!({"message": "<i>edited</i>"})),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api
        .call("DELETE", &format!("{messages}/1"), None, Some(&alice.token))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api
        .call(
            "POST",
            &format!("{messages}/3/reactions"),
            Some(json!({"emoji": "👍"})),
            Some(&bob.token),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let mut browser = Browser::new(&server);
    browser.log_in(&bob.email).await;
    // Before bob opens the room, its unread count is in the list and the tab title.
    let list = browser.page("/chat/").await;
    let unread: i64 = list
        .split(r#"data-unread=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .expect("an unread count");
    assert!(unread > 0);
    assert!(
        list.contains(&format!("<title>({unread}) Natter</title>")),
        "{list}"
    );
    let page = browser.page(&format!("/chat/?rid={rid}")).await;
    assert!(
        page.contains("<title>alice · Natter</title>"),
        "read once open"
    );
    for raw in ["<i>", "<script>x()"] {
        assert!(!page.contains(raw), "raw HTML {raw} reached the page");
    }
    let deleted = message_li(&page, 1);
    assert!(
        deleted.contains("deleted") && deleted.contains("message deleted"),
        "{deleted}"
    );
    assert!(
        !deleted.contains("gone soon"),
        "a deleted message's text is not sent"
    );
    let edited = message_li(&page, 2);
    assert!(edited.contains(&escaped("<i>edited</i>")), "{edited}");
    assert!(edited.contains(r#"data-testid="edited""#), "{edited}");
    let reply = message_li(&page, 3);
    assert!(reply.contains(r#"data-reply-seq="2""#), "{reply}");
    assert!(
        reply.contains(&format!(
            r#"<span class="quote-text">{}</span>"#,
            escaped("<i>edited</i>")
        )),
        "the quote shows the edit: {reply}"
    );
    assert!(
        reply.contains(&escaped("<script>x()</script> a reply")),
        "{reply}"
    );
    assert!(
        reply.contains(r#"data-emoji="👍" aria-pressed="true""#),
        "bob's own reaction: {reply}"
    );
    assert!(
        reply.contains(r#"<span class="reaction-count">1</span>"#),
        "{reply}"
    );
    assert!(!edited.contains("reaction"), "no reactions on message 2");

    // The chat list's preview of a deleted last message says so.
    let r = api
        .call("DELETE", &format!("{messages}/3"), None, Some(&alice.token))
        .await;
    assert_eq!(r.status, 200);
    let page = browser.page("/chat/").await;
    assert!(
        page.contains("message deleted") && !page.contains("a reply"),
        "{page}"
    );
}

#[tokio::test]
async fn a_search_hit_opens_the_room_around_it_highlighted() {
    // A page of 10 messages, so that 20 messages need a window.
    let server = Server::start_with(&["--history-page-max", "10"]);
    let api = server.api();
    let alice = token_of(&server, "alice").await;
    let bob = token_of(&server, "bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    for i in 1..=20 {
        let r = api
            .call(
                "POST",
                &format!("/rooms/{rid}/messages"),
                Some(json!({"message": format!("message number {i}")})),
                Some(&alice.token),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let mut browser = Browser::new(&server);
    browser.log_in(&bob.email).await;

    let page = browser.page(&format!("/chat/?rid={rid}&at=5")).await;
    assert_eq!(page.matches(" highlight").count(), 1);
    assert!(message_li(&page, 5).contains("highlight"));
    assert!(
        page.contains(r#"data-seq="1""#),
        "older messages before the hit"
    );
    assert!(page.contains(r#"data-seq="14""#) && !page.contains(r#"data-seq="15""#));
    assert!(
        page.contains(r#"data-more-after="true""#),
        "the window stops before the end"
    );

    let page = browser.page(&format!("/chat/?rid={rid}&at=18")).await;
    assert!(message_li(&page, 18).contains("highlight"));
    assert!(page.contains(r#"data-seq="13""#) && page.contains(r#"data-seq="20""#));
    assert!(
        !page.contains("data-more-after"),
        "the window reaches the end"
    );

    // Anything else opens the latest page, with nothing highlighted.
    for at in ["0", "99", "x", ""] {
        let page = browser.page(&format!("/chat/?rid={rid}&at={at}")).await;
        assert!(!page.contains(" highlight"), "at={at}");
        assert!(
            page.contains(r#"data-seq="20""#) && !page.contains(r#"data-seq="10""#),
            "at={at}"
        );
    }
}
