//! Password reset by email (docs/protocol.md, "Password reset"): against a
//! real SMTP server the test runs on a loopback port (tests/common/smtp.rs).
//! The whole flow by the pages and the API, answers that say nothing of who
//! has an account, links that work once and expire, the budgets, a server
//! without SMTP, and SMTP servers that are down or hang.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::smtp::{Received, SmtpServer};
use common::{Api, PASSWORD, Server, Socket, TestUser};
use reqwest::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;

/// The base of the links mailed (`--public-url`): not the test server's own
/// address, so the test sees the flag at work.
const PUBLIC_URL: &str = "https://chat.example.test";
const NEW_PASSWORD: &str = "a brand new secret";

/// A server that mails through `smtp`, with `extra` flags.
fn mailing(smtp: &SmtpServer, extra: &[&str]) -> Server {
    Server::start_with(&flags(&smtp.url(), extra))
}

fn flags<'a>(smtp_url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec![
        "--smtp-url",
        smtp_url,
        "--smtp-from",
        "Natter <natter@example.test>",
        "--public-url",
        PUBLIC_URL,
    ];
    flags.extend_from_slice(extra);
    flags
}

async fn ask(api: &Api, email: &str) -> common::Reply {
    api.call(
        "POST",
        "/password-resets",
        Some(json!({ "email": email })),
        None,
    )
    .await
}

/// A mail's text, quoted-printable's soft line breaks undone (lettre picks
/// that encoding for lines of 75 characters or more, as a link may be).
fn text_of(mail: &Received) -> String {
    mail.data.replace("=\r\n", "")
}

/// The token of the link in a mail.
fn token_in(mail: &Received) -> String {
    let text = text_of(mail);
    let prefix = format!("{PUBLIC_URL}/reset/");
    let at = text.find(&prefix).expect("a reset link in the mail") + prefix.len();
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// A client that does not follow redirects, as a browser's each hop.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// `natter user disable` on the server's database, as its operator would.
fn disable(server: &Server, email: &str) {
    let dir = server.data_dir.path();
    let mut command = Command::new(env!("CARGO_BIN_EXE_natter"));
    command.args(["user", "disable", "--email", email, "--data-dir"]);
    command.arg(dir);
    if let Some(url) = server.postgres_url() {
        command.args(["--database-url", url.trim()]);
    }
    let out = command.env("NATTER_LOG", "warn").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn log_in(api: &Api, user: &TestUser, password: &str) -> u16 {
    let body = json!({ "email": user.email, "password": password });
    api.call("POST", "/sessions", Some(body), None).await.status
}

#[tokio::test]
async fn a_mailed_link_sets_a_new_password_and_ends_every_session() {
    let smtp = SmtpServer::start().await;
    let server = Server::start_logging(&flags(&smtp.url(), &[]), "info");
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let other_session = api.new_session(&ann).await;
    let socket = Socket::connect(&server.url, &ann.token).await;
    let web = browser();
    let login = web
        .get(format!("{}/login", server.url))
        .send()
        .await
        .unwrap();
    assert!(
        login.text().await.unwrap().contains(r#"href="/forgot""#),
        "the login page offers a reset"
    );

    let r = ask(&api, &ann.email).await;
    assert_eq!((r.status, &r.body), (202, &serde_json::Value::Null));
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1, "one mail");
    let mail = &mails[0];
    assert_eq!(mail.from, "natter@example.test");
    assert_eq!(mail.to, ["ann@example.test"]);
    let text = text_of(mail);
    assert!(
        text.contains("Subject: Set a new Natter password"),
        "{text}"
    );
    assert!(text.contains("To: ann <ann@example.test>"), "{text}");
    assert!(text.contains("for 30 minutes"), "{text}");
    let token = token_in(mail);
    assert_eq!(token.len(), 43, "256 random bits: {token}");

    // The link's page, then its form (same-origin only, as every form).
    let link = format!("{}/reset/{token}", server.url);
    let page = web.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(r#"data-testid="reset-form""#)
    );
    let forged = web
        .post(&link)
        .header("origin", "https://evil.example")
        .form(&[("password", "chosen by another site")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "a cross-site form is refused");
    let short = web
        .post(&link)
        .header("origin", &server.url)
        .form(&[("password", "short")])
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), 422, "the registration rule");
    assert!(short.text().await.unwrap().contains("reset-error"));
    let set = web
        .post(&link)
        .header("origin", &server.url)
        .form(&[("password", NEW_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 303);
    assert_eq!(set.headers()[LOCATION], "/login");
    assert!(
        set.headers().contains_key(SET_COOKIE),
        "the notice for the login page"
    );

    assert_eq!(log_in(&api, &ann, NEW_PASSWORD).await, 201);
    assert_eq!(log_in(&api, &ann, PASSWORD).await, 401, "the old password");
    for token in [&ann.token, &other_session] {
        let me = api.call("GET", "/me", None, Some(token)).await;
        assert_eq!(me.status, 401, "every earlier session ended");
    }
    assert!(
        socket.closed_within(Duration::from_secs(5)).await,
        "their sockets close"
    );
    assert_eq!(api.call_as(&bob, "GET", "/me", None).await.status, 200);

    // Used: the link works no more, by the page or the API.
    let again = web.get(&link).send().await.unwrap();
    assert_eq!(again.status(), 404);
    assert!(again.text().await.unwrap().contains("reset-unusable"));
    let path = format!("/password-resets/{token}");
    let r = api
        .call(
            "POST",
            &path,
            Some(json!({ "password": "yet another one" })),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "invalid_reset"));
    assert_eq!(log_in(&api, &ann, NEW_PASSWORD).await, 201);

    let log = server.log();
    assert!(!log.contains(&token), "the token is never logged");
    assert!(log.contains("/reset/…"), "its path is, cut");
}

#[tokio::test]
async fn the_answer_is_the_same_for_every_email_and_only_accounts_get_mail() {
    let smtp = SmtpServer::start().await;
    let server = mailing(&smtp, &[]);
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    disable(&server, &bob.email);

    let unknown = ask(&api, "nobody@example.test").await;
    let disabled = ask(&api, &bob.email).await;
    let known = ask(&api, &ann.email).await;
    for other in [&unknown, &disabled] {
        assert_eq!((other.status, &other.body), (known.status, &known.body));
    }
    let mails = smtp.wait_for(1).await;
    common::settle().await;
    assert_eq!(
        smtp.messages().len(),
        1,
        "none for nobody, none for the disabled"
    );
    assert_eq!(mails[0].to, [ann.email.as_str()]);

    // The form alike: the same page for both.
    let web = browser();
    let form = |email: &'static str| {
        web.post(format!("{}/forgot", server.url))
            .form(&[("email", email)])
            .send()
    };
    let unknown = form("nobody@example.test").await.unwrap();
    let known = form("ann@example.test").await.unwrap();
    assert_eq!(
        (unknown.status().as_u16(), known.status().as_u16()),
        (200, 200)
    );
    let (unknown, known) = (unknown.text().await.unwrap(), known.text().await.unwrap());
    assert_eq!(unknown, known);
    assert!(known.contains("on its way"), "{known}");
    assert_eq!(smtp.wait_for(2).await.len(), 2);
    common::settle().await;
    assert_eq!(smtp.messages().len(), 2, "none for nobody");

    let malformed = ask(&api, "not an email").await;
    assert_eq!((malformed.status, malformed.code()), (422, "invalid"));
    let r = api
        .call(
            "POST",
            "/password-resets/no-such-token",
            Some(json!({ "password": NEW_PASSWORD })),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "invalid_reset"));
    assert_eq!(log_in(&api, &ann, PASSWORD).await, 201, "nothing changed");
}

#[tokio::test]
async fn links_expire_and_an_account_holds_three_live_ones() {
    let smtp = SmtpServer::start().await;
    let server = mailing(&smtp, &["--password-reset-lifetime", "3s"]);
    let api = server.api();
    let ann = api.register("ann").await;

    for _ in 0..4 {
        assert_eq!(ask(&api, &ann.email).await.status, 202);
    }
    let mails = smtp.wait_for(3).await;
    common::settle().await;
    assert_eq!(smtp.messages().len(), 3, "the fourth request mails nothing");
    assert!(text_of(&mails[0]).contains("for 3 seconds"));
    let first = token_in(&mails[0]);

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let path = format!("/password-resets/{first}");
    let body = json!({ "password": NEW_PASSWORD });
    let r = api.call("POST", &path, Some(body.clone()), None).await;
    assert_eq!((r.status, r.code()), (404, "invalid_reset"), "expired");
    assert_eq!(log_in(&api, &ann, PASSWORD).await, 201);

    // Expired links free their places: a new request mails a new one.
    assert_eq!(ask(&api, &ann.email).await.status, 202);
    let mails = smtp.wait_for(4).await;
    let fresh = token_in(&mails[3]);
    let path = format!("/password-resets/{fresh}");
    let r = api.call("POST", &path, Some(body.clone()), None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = api.call("POST", &path, Some(body), None).await;
    assert_eq!((r.status, r.code()), (404, "invalid_reset"), "used once");
    assert_eq!(log_in(&api, &ann, NEW_PASSWORD).await, 201);
}

#[tokio::test]
async fn requests_are_throttled_per_email_and_per_address() {
    let smtp = SmtpServer::start().await;
    let server = mailing(
        &smtp,
        &[
            "--auth-attempts-per-account",
            "2",
            "--auth-attempts-per-address",
            "5",
        ],
    );
    let api = server.api();
    for _ in 0..2 {
        assert_eq!(ask(&api, "ann@example.test").await.status, 202);
    }
    let r = ask(&api, "ann@example.test").await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "per email");
    // Those three took three of the address's five.
    for email in ["bob@example.test", "cyd@example.test"] {
        assert_eq!(ask(&api, email).await.status, 202);
    }
    let refused = api
        .http
        .post(format!("{}/password-resets", api.base))
        .json(&json!({ "email": "dan@example.test" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429, "per address");
    assert!(refused.headers().contains_key(RETRY_AFTER));
    let page = browser()
        .post(format!("{}/forgot", server.url))
        .form(&[("email", "eve@example.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 429, "the form too");
}

#[tokio::test]
async fn without_smtp_there_is_no_reset() {
    let server = Server::start();
    let api = server.api();
    let ann = api.register("ann").await;
    let r = ask(&api, &ann.email).await;
    assert_eq!((r.status, r.code()), (404, "reset_unavailable"));
    let r = api
        .call(
            "POST",
            "/password-resets/some-token",
            Some(json!({ "password": NEW_PASSWORD })),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "reset_unavailable"));
    let web = browser();
    for path in ["/forgot", "/reset/some-token"] {
        let page = web
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 404, "{path}");
    }
    let login = web
        .get(format!("{}/login", server.url))
        .send()
        .await
        .unwrap();
    assert!(!login.text().await.unwrap().contains("/forgot"));
}

#[test]
fn smtp_settings_are_checked_at_start() {
    let data_dir = tempfile::tempdir().unwrap();
    let fails = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_natter"))
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fails(&[
        "--smtp-url",
        "smtp://127.0.0.1:25",
        "--smtp-from",
        "n@example.test",
    ]);
    assert!(err.contains("--public-url"), "{err}");
    let err = fails(&[
        "--smtp-url",
        "smtp://127.0.0.1:25",
        "--public-url",
        PUBLIC_URL,
    ]);
    assert!(err.contains("--smtp-from"), "{err}");
    let err = fails(&[
        "--smtp-url",
        "smtp://127.0.0.1:25",
        "--smtp-from",
        "n@example.test",
        "--public-url",
        "chat.example.test",
    ]);
    assert!(err.contains("--public-url"), "{err}");
    let err = fails(&[
        "--smtp-url",
        "smtp://127.0.0.1:25",
        "--smtp-from",
        "not an address",
        "--public-url",
        PUBLIC_URL,
    ]);
    assert!(err.contains("--smtp-from"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let err = fails(&flags("imap://ann:s3cret@mail.example.test", &[]));
    assert!(err.contains("--smtp-url must be"), "{err}");
    assert!(
        !err.contains("s3cret"),
        "the password is not repeated: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test]
async fn an_smtp_server_that_is_down_or_hangs_holds_no_request() {
    // Down: nothing listens there.
    let down = format!("smtp://127.0.0.1:{}", common::free_port());
    let server = Server::start_with(&flags(&down, &[]));
    let api = server.api();
    let ann = api.register("ann").await;
    let started = Instant::now();
    assert_eq!(ask(&api, &ann.email).await.status, 202);
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(server);

    // Hung: every connection of the first four (all the mails a node sends
    // at once) is accepted and never answered; the fifth mail goes out once
    // their one-second deadline frees a place.
    let smtp = SmtpServer::start().await;
    smtp.hang_next(4);
    let server = mailing(&smtp, &["--smtp-timeout-secs", "1"]);
    let api = server.api();
    let users = api.register_each(["ann", "bob", "cyd", "dan", "eve"]).await;
    for user in &users {
        let started = Instant::now();
        assert_eq!(ask(&api, &user.email).await.status, 202);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered at once: {:?}",
            started.elapsed()
        );
        // In order: the first four take the hung connections.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1, "the fifth got through");
    assert_eq!(mails[0].to, ["eve@example.test"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while smtp.hung_up() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(smtp.hung_up(), 4, "the hung connections were given up");
    assert_eq!(log_in(&api, &users[0], PASSWORD).await, 201);
}
