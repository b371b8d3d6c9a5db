//! Per-user budgets (docs/security.md, "Throttles"): every client event has
//! one, not only sends; email lookups and adds of one person have their own.
//! Each test sets a small budget with its flag and shows that past it the
//! server answers `rate_limited`, changes nothing and broadcasts nothing.

mod common;

use common::{Server, Socket, from_room, settle};
use serde_json::json;

#[tokio::test]
async fn a_flood_of_joins_reads_and_typing_is_cut_off_at_the_event_budget() {
    // 2 a second, a burst of 10.
    let server = Server::start_with(&["--event-rate", "2"]);
    let api = server.api();
    let [alice, bob] = api.register_each(["alice", "bob"]).await;
    // Bob opens it: alice's budget is whole when her flood starts.
    let rid = api.open_chat(&bob, &alice).await;
    let flooder = Socket::connect(&server.url, &alice.token).await;
    let [listener] = server.hearing_all([&bob]).await;

    let mut answered = 0;
    let mut refused = 0;
    for n in 0..100 {
        let (event, payload) = match n % 3 {
            0 => ("join-chat", json!({"rid": rid})),
            1 => ("read", json!({"rid": rid, "seq": 0})),
            _ => ("typing", json!({"rid": rid, "typing": false})),
        };
        let ack = flooder.ack(event, payload).await;
        match ack["error"]["code"].as_str() {
            None => answered += 1,
            Some("rate_limited") => refused += 1,
            Some(other) => panic!("{event}: {other}"),
        }
    }
    assert!(
        (10..=20).contains(&answered),
        "{answered} answered, {refused} refused"
    );
    settle().await;
    let heard = from_room(&listener, "joined-chat", &rid).len()
        + from_room(&listener, "typing", &rid).len();
    assert!(
        heard <= answered,
        "the refused events were broadcast: {heard}"
    );
    // Other people are not held up by alice's flood.
    let ack = Socket::connect(&server.url, &bob.token)
        .await
        .ack("join-chat", json!({"rid": rid}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test]
async fn email_lookups_are_budgeted_whether_or_not_the_address_exists() {
    let server = Server::start_with(&["--lookups-per-hour", "5"]);
    let api = server.api();
    let [alice, bob] = api.register_each(["alice", "bob"]).await;
    let mut codes = Vec::new();
    for n in 0..8 {
        let email = if n % 2 == 0 {
            bob.email.clone()
        } else {
            format!("nobody{n}@example.test")
        };
        let r = api
            .call_as(&alice, "POST", "/chats", Some(json!({"email": email})))
            .await;
        codes.push((r.status, r.code().to_owned()));
    }
    let refused = codes.iter().filter(|(_, c)| c == "rate_limited").count();
    assert_eq!(refused, 3, "{codes:?}");
    assert!(
        codes[5..].iter().all(|(s, _)| *s == 429),
        "past the budget known and unknown addresses answer alike: {codes:?}"
    );
    // A group naming three people is three lookups: refused at once, and no group is made.
    let r = api
        .call_as(
            &alice,
            "POST",
            "/groups",
            Some(json!({"title": "Too many", "emails": [bob.email, bob.email, bob.email]})),
        )
        .await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{:?}", r.body);
    let chats = api.call_as(&alice, "GET", "/chats", None).await;
    assert_eq!(
        chats.body["chats"].as_array().unwrap().len(),
        1,
        "only the direct chat"
    );
}

#[tokio::test]
async fn nobody_pulls_the_same_person_into_group_after_group() {
    let server = Server::start_with(&["--adds-per-person-per-hour", "3"]);
    let api = server.api();
    let [alice, bob, carol] = api.register_each(["alice", "bob", "carol"]).await;
    let mut made = 0;
    let mut refused = 0;
    for n in 0..10 {
        let title = format!("Group {n}");
        let body = json!({"title": title, "emails": [bob.email]});
        let r = api.call_as(&alice, "POST", "/groups", Some(body)).await;
        match r.status {
            201 => made += 1,
            429 => refused += 1,
            _ => panic!("{:?}", r.body),
        }
    }
    assert_eq!((made, refused), (3, 7));
    let chats = api.call_as(&bob, "GET", "/chats", None).await;
    assert_eq!(chats.body["chats"].as_array().unwrap().len(), 3);

    // Nor back into a group the moment they left it: someone else can
    // still be added, and one who left is asked first (docs/protocol.md,
    // "Who may add whom").
    let rid = api.create_group(&alice, "Another", &[&carol]).await;
    let members = format!("/rooms/{rid}/members");
    let add_bob = json!({"email": bob.email});
    let r = api.call_as(&alice, "POST", &members, Some(add_bob)).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{:?}", r.body);
    let r = api
        .call_as(&carol, "DELETE", &format!("{members}/me"), None)
        .await;
    assert_eq!(r.status, 204);
    let add_carol = json!({"email": carol.email});
    let r = api.call_as(&alice, "POST", &members, Some(add_carol)).await;
    assert_eq!((r.status, r.body), (202, json!({"invited": true})));
}
