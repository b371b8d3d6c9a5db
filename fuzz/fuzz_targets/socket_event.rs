//! A Socket.IO text frame from a client, decoded as socketioxide decodes it
//! (the common parser, then the event's `TryData<Value>`), then handled by
//! the contract's event functions against the real core.
//!
//! Invariants: nothing panics; every failure is one of the event's contract
//! codes (never `internal`); a stored message is the trimmed text, in one of
//! the user's rooms.

#![no_main]

use libfuzzer_sys::fuzz_target;
use natter::realtime::events::{self, ClientEvent};
use natter_fuzz::run;
use serde_json::{Value, json};
use socketioxide_core::Str;
use socketioxide_core::packet::PacketData;
use socketioxide_core::parser::{Parse, ParseConfig, ParserState};
use socketioxide_parser_common::CommonParser;

fuzz_target!(|input: &[u8]| {
    run(|world| async move {
        let Ok(frame) = String::from_utf8(world.expand(input)) else {
            return; // Engine.IO text frames are UTF-8; binary frames go elsewhere.
        };
        let parser = CommonParser;
        let Ok(packet) = parser.decode_str(
            &ParseConfig::default(),
            &ParserState::default(),
            Str::from(frame),
        ) else {
            return;
        };
        let (PacketData::Event(mut value, _) | PacketData::BinaryEvent(mut value, _)) =
            packet.inner
        else {
            return;
        };
        let Ok(event) = parser.read_event(&value).map(str::to_owned) else {
            return;
        };
        let data = events::payload(parser.decode_value::<Value>(&mut value, true));
        let (session, natter) = (&world.session, &world.natter);
        let Some(kind) = ClientEvent::parse(&event) else {
            return;
        };
        let (allowed, outcome): (&[&str], _) = match kind {
            ClientEvent::JoinChat => (
                &["invalid", "not_member", "no_such_room"],
                events::join_chat(natter, session, &data)
                    .await
                    .map(|(rid, seq)| json!({"rid": rid, "last_seq": seq})),
            ),
            ClientEvent::Outgoing => {
                let sent = events::outgoing(natter, session, &data, None).await;
                if let Ok(message) = &sent {
                    let rooms = [&world.room, &world.group];
                    assert!(
                        rooms.contains(&&message.rid),
                        "stored outside the member's rooms"
                    );
                    // A resend (same client_id) answers with the first copy's text.
                    if message.client_id.is_none() {
                        let text = data["message"].as_str().expect("a string was sent");
                        assert_eq!(message.message, text.trim(), "stored text differs");
                    }
                }
                (
                    &["invalid", "not_member", "no_such_room", "empty", "too_long"],
                    sent.map(|m| json!(m)),
                )
            }
            ClientEvent::Sync => (
                &["invalid", "not_member", "no_such_room"],
                events::sync(natter, session, &data).await.map(|m| json!(m)),
            ),
            ClientEvent::Search => (
                &["invalid"],
                events::search(natter, session, &data)
                    .await
                    .map(|a| json!(a)),
            ),
            ClientEvent::CreateGroup => (
                &["invalid", "no_such_user"],
                events::create_group(natter, session, &data)
                    .await
                    .map(|a| json!(a)),
            ),
            ClientEvent::Room(room_event) => (
                &[
                    "invalid",
                    "not_member",
                    "no_such_room",
                    "empty",
                    "too_long",
                    "no_such_message",
                    "not_sender",
                    "deleted",
                    "not_group",
                    "not_owner",
                    "already_member",
                    "no_such_user",
                ],
                events::room_event(natter, session, room_event, &data, "fuzz")
                    .await
                    .map(|a| json!(a)),
            ),
        };
        if let Err(e) = outcome {
            assert!(allowed.contains(&e.code()), "{event}: {e:?} for {data}");
        }
    });
});
