//! Input hygiene (docs/security.md): text that shows nothing is no text,
//! names cannot be reordered by bidirectional overrides, emails are compared
//! in one normal form, and nothing of a person's is cached.

mod common;

use common::{PASSWORD, Server};
use serde_json::json;

#[tokio::test]
async fn invisible_text_is_refused_and_stores_nothing() {
    let server = Server::start();
    let api = server.api();
    let [alice, bob] = api.register_each(["alice", "bob"]).await;
    let rid = api.open_chat(&alice, &bob).await;
    let messages = format!("/rooms/{rid}/messages");
    for blank in [
        "\u{200B}\u{200B}\u{200B}",
        "\u{2060}",
        "\u{FEFF} \u{200D}",
        "\u{3164}",
    ] {
        let r = api
            .call_as(&alice, "POST", &messages, Some(json!({"message": blank})))
            .await;
        assert_eq!((r.status, r.code()), (422, "empty"), "{blank:?}");
        let r = api
            .call_as(
                &alice,
                "POST",
                "/groups",
                Some(json!({"title": blank, "emails": []})),
            )
            .await;
        assert_eq!((r.status, r.code()), (422, "invalid"), "title {blank:?}");
    }
    assert!(api.history(&alice, &rid, "").await.is_empty());

    // A title that would read backwards is refused; right-to-left text is fine.
    let r = api
        .call_as(
            &alice,
            "POST",
            "/groups",
            Some(json!({"title": "Trip\u{202E}gpj.exe"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid"), "{:?}", r.body);
    let r = api
        .call_as(&alice, "POST", "/groups", Some(json!({"title": "טיול"})))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let rename = json!({"title": "\u{2067}evil"});
    let r = api
        .call_as(
            &alice,
            "PATCH",
            &format!("/rooms/{}", r.body["room_id"].as_str().unwrap()),
            Some(rename),
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "invalid"), "{:?}", r.body);
}

#[tokio::test]
async fn emails_are_normalised_and_invisible_ones_refused() {
    let server = Server::start();
    let api = server.api();
    let register = |username: &str, email: &str, password: &str| {
        api.call(
            "POST",
            "/users",
            Some(json!({"username": username, "email": email, "password": password})),
            None,
        )
    };
    // Zero-width characters would make a second "alice" that looks the same.
    let r = register("alice2", "ali\u{200B}ce@example.test", PASSWORD).await;
    assert_eq!((r.status, r.code()), (422, "invalid"), "{:?}", r.body);
    let r = register("carol", "carol@example.test", &"\u{200B}".repeat(8)).await;
    assert_eq!(
        (r.status, r.code()),
        (422, "invalid"),
        "an invisible password"
    );
    // Full-width letters are the same address, in NFKC.
    let r = register("alice", "ＡＬＩＣＥ@example.test", PASSWORD).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["email"], "alice@example.test");
    let r = register("alice3", "alice@example.test", PASSWORD).await;
    assert_eq!((r.status, r.code()), (409, "taken"));
    let r = api
        .call(
            "POST",
            "/sessions",
            Some(json!({"email": "Ａlice@example.test", "password": PASSWORD})),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "signs in under either spelling");
    let bob = api.register("bob").await;
    let r = api
        .call_as(
            &bob,
            "POST",
            "/chats",
            Some(json!({"email": "ａlice@example.test"})),
        )
        .await;
    assert_eq!(r.status, 201, "found under either spelling: {:?}", r.body);
}

#[tokio::test]
async fn nothing_of_a_signed_in_person_is_cached() {
    let server = Server::start();
    let alice = server.api().register("alice").await;
    let http = reqwest::Client::new();
    let api = http
        .get(format!("{}/api/v1/me", server.url))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    let page = http
        .get(format!("{}/chat/", server.url))
        .header("cookie", format!("natter_session={}", alice.token))
        .send()
        .await
        .unwrap();
    let polling = http
        .get(format!("{}/socket.io/?EIO=4&transport=polling", server.url))
        .send()
        .await
        .unwrap();
    for (what, r) in [("API", api), ("page", page), ("polling", polling)] {
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(
            r.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{what}"
        );
    }
}
