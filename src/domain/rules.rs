//! Input rules of the contract (PROTOCOL.md §4), in one place.
//!
//! Every door (web form, JSON API, Socket.IO event) passes raw input through
//! these functions before the domain acts, so "bad input changes nothing".

use std::net::IpAddr;

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization as _;

use super::error::{Error, Result};
use super::model::NotifyLevel;
use super::store::PushEndpoint;

/// Limits that operators may tune; the defaults are the contract's.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_chars: usize,
    pub history_page_max: i64,
    pub history_page_default: i64,
    /// How long one search may run, waiting for a connection included.
    pub search_timeout: std::time::Duration,
    /// How long a send may wait for its commit (see `Delivery::store`).
    pub send_deadline: std::time::Duration,
    /// Whether push endpoints may be plain http or local addresses (tests
    /// only: see [`push_subscription`]).
    pub push_allow_http: bool,
    /// Whether outgoing webhooks may go to loopback and private addresses
    /// (`--webhook-allow-private`; see [`webhook_url`]).
    pub webhook_allow_private: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_chars: 4000,
            history_page_max: 200,
            history_page_default: 50,
            search_timeout: std::time::Duration::from_millis(1000),
            send_deadline: std::time::Duration::from_millis(5000),
            push_allow_http: false,
            webhook_allow_private: false,
        }
    }
}

const MAX_EMAIL_LEN: usize = 254;
const MIN_PASSWORD_CHARS: usize = 8;
/// Argon2 cost grows with input; an upper bound keeps one request from being a DoS.
const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_CLIENT_ID_CHARS: usize = 128;
/// Room ids we mint are 22 characters; anything much longer cannot be one.
const MAX_RID_CHARS: usize = 64;

/// Characters that show nothing where they stand: Unicode's default-ignorable
/// code points (zero-width spaces and joiners, soft hyphen, variation
/// selectors, tags, fillers, bidirectional marks) and the blank Braille pattern.
fn is_invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x2800
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// Whether a reader sees anything of `text`: one character that is neither
/// white space, a control nor invisible.
fn has_visible(text: &str) -> bool {
    text.chars()
        .any(|c| !c.is_whitespace() && !c.is_control() && !is_invisible(c))
}

/// Bidirectional embeddings, overrides and isolates: in a name or a title they
/// reorder what follows them, so "evil\u{202E}gpj.exe" reads "evilexe.jpg".
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The field `name` of a JSON payload or body, or null when it is missing (or
/// the payload is not an object): the rules below then refuse it as `invalid`.
pub fn field<'a>(payload: &'a Value, name: &str) -> &'a Value {
    payload.get(name).unwrap_or(&Value::Null)
}

/// A JSON payload (a Socket.IO event's, an API body) as the one-field
/// actions read it: each field by its name and its rule, so that both doors
/// read it alike.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a>(pub &'a Value);

impl Payload<'_> {
    /// `seq` of a read marker: required by the caller (see [`seq_cursor`]).
    pub fn read_seq(self) -> Result<Option<i64>> {
        seq_cursor(self.0.get("seq"), "seq")
    }

    /// `typing` (see [`typing`]).
    pub fn typing(self) -> Result<bool> {
        typing(self.0.get("typing"))
    }

    /// A group's `title` (see [`group_title`]).
    pub fn title(self) -> Result<String> {
        group_title(field(self.0, "title"))
    }

    /// The `email` of a member to add (see [`member_email`]).
    pub fn email(self) -> Result<String> {
        member_email(field(self.0, "email"))
    }

    /// A chat's `notify` level (see [`notify_level`]).
    pub fn notify(self) -> Result<NotifyLevel> {
        notify_level(field(self.0, "notify"))
    }
}

/// Usernames are case-folded: `Alice` and `alice` are one name.
pub fn username(raw: &str) -> Result<String> {
    let name = raw.trim().to_lowercase();
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if !(3..=32).contains(&name.len()) || !ok_chars {
        return Err(Error::invalid(
            "username must be 3 to 32 of a-z, 0-9, _ . -",
        ));
    }
    Ok(name)
}

/// Emails are compared in their NFKC form, case-insensitively (so `ａｌｉｃｅ@…`
/// is `alice@…`); we check the shape `local@domain`, and refuse white space,
/// controls and invisible characters, which would make look-alike addresses.
pub fn email(raw: &str) -> Result<String> {
    let mail: String = raw.trim().nfkc().collect::<String>().to_lowercase();
    let shape_ok = match mail.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    };
    let clean = !mail
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c));
    if mail.len() > MAX_EMAIL_LEN || !shape_ok || !clean {
        return Err(Error::invalid("enter a valid email address"));
    }
    Ok(mail)
}

/// A password: at least 8 characters a person types (invisible ones and
/// controls do not count), at most 1 KiB.
pub fn password(raw: &str) -> Result<()> {
    let typed = raw
        .chars()
        .filter(|&c| !c.is_control() && !is_invisible(c))
        .count();
    if typed < MIN_PASSWORD_CHARS {
        return Err(Error::invalid("password must be at least 8 characters"));
    }
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid("password is too long"));
    }
    Ok(())
}

/// A message body: a string of 1..=max characters once trimmed. Stored trimmed.
pub fn message_body(raw: &Value, limits: &Limits) -> Result<String> {
    let Value::String(text) = raw else {
        return Err(Error::invalid("message must be a string"));
    };
    message_text(text, limits)
}

/// A message body as typed (a form's field): see [`message_body`].
pub fn message_text(text: &str, limits: &Limits) -> Result<String> {
    let body = text.trim();
    // NUL is the one character no store can keep (PostgreSQL text refuses it).
    if body.contains('\0') {
        return Err(Error::invalid("message must not contain NUL characters"));
    }
    // Nothing but zero-width or other invisible characters shows as nothing.
    if !has_visible(body) {
        return Err(Error::Empty);
    }
    let chars = body.chars().count();
    if chars > limits.max_message_chars {
        return Err(Error::TooLong(limits.max_message_chars));
    }
    Ok(body.to_owned())
}

/// An optional client-chosen idempotency key.
pub fn client_id(raw: Option<&Value>) -> Result<Option<String>> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id))
            if (1..=MAX_CLIENT_ID_CHARS).contains(&id.chars().count())
                && !id.chars().any(char::is_control) =>
        {
            Ok(Some(id.clone()))
        }
        Some(_) => Err(Error::invalid(
            "client_id must be a string of 1 to 128 characters",
        )),
    }
}

/// A room id as a client sends it. Numbers are accepted as their decimal text
/// (some clients send ids as numbers); they simply name no room of ours.
pub fn room_id(raw: Option<&Value>) -> Result<String> {
    let rid = match raw {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(Error::invalid("rid is required")),
    };
    if rid.is_empty() || rid.chars().count() > MAX_RID_CHARS || rid.chars().any(char::is_control) {
        return Err(Error::invalid("rid is malformed"));
    }
    Ok(rid)
}

const MAX_GROUP_TITLE_CHARS: usize = 80;
const MAX_GROUP_EMAILS: usize = 100;
const MAX_EMOJI_BYTES: usize = 32;
const MAX_SEARCH_CHARS: usize = 200;
/// More words than this add nothing a person would type, only cost.
const MAX_SEARCH_WORDS: usize = 10;

/// A group's title: a string of 1..=80 characters once trimmed, something
/// visible among them, no control and no bidirectional override characters.
pub fn group_title(raw: &Value) -> Result<String> {
    let Value::String(text) = raw else {
        return Err(Error::invalid("title must be a string"));
    };
    group_title_text(text)
}

/// A group's title as typed (a form's field): see [`group_title`].
pub fn group_title_text(text: &str) -> Result<String> {
    let title = text.trim();
    let chars = title.chars().count();
    if chars == 0 || chars > MAX_GROUP_TITLE_CHARS || !has_visible(title) {
        return Err(Error::invalid(
            "title must be 1 to 80 characters, not all invisible",
        ));
    }
    if title.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(Error::invalid(
            "title must not contain control or bidirectional override characters",
        ));
    }
    Ok(title.to_owned())
}

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// A display name as sent: a string of 1 to 64 characters, not all
/// invisible, without control or bidirectional override characters; `null`
/// or an empty string removes it (the username shows).
pub fn display_name(raw: &Value) -> Result<Option<String>> {
    let text = match raw {
        Value::Null => return Ok(None),
        Value::String(text) => text.trim(),
        _ => return Err(Error::invalid("display_name must be a string or null")),
    };
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().count() > MAX_DISPLAY_NAME_CHARS || !has_visible(text) {
        return Err(Error::invalid(
            "display_name must be 1 to 64 characters, not all invisible",
        ));
    }
    if text.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(Error::invalid(
            "display_name must not contain control or bidirectional override characters",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// The members' emails of a new group: an array of at most 100 emails (or absent).
pub fn email_list(raw: Option<&Value>) -> Result<Vec<String>> {
    let items = match raw {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_GROUP_EMAILS => items,
        Some(_) => return Err(too_many_emails()),
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(text) => email(text),
            _ => Err(Error::invalid("emails must be strings")),
        })
        .collect()
}

/// The members' emails of a new group as typed (a form's list): see [`email_list`].
pub fn email_texts(items: &[&str]) -> Result<Vec<String>> {
    if items.len() > MAX_GROUP_EMAILS {
        return Err(too_many_emails());
    }
    items.iter().map(|item| email(item)).collect()
}

fn too_many_emails() -> Error {
    Error::invalid("emails must be an array of at most 100 emails")
}

/// Whom a removal from a group names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whom {
    /// The caller (`"me"`): leaving.
    Me,
    User(i64),
}

/// A member to remove: `"me"`, or a user id (see [`user_id`]).
pub fn whom(raw: &Value) -> Result<Whom> {
    match raw {
        Value::String(s) if s == "me" => Ok(Whom::Me),
        other => user_id(Some(other)).map(Whom::User),
    }
}

/// A new group member's email as sent: any string (it is looked up as
/// [`email`] would normalise it).
pub fn member_email(raw: &Value) -> Result<String> {
    raw.as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid("email must be a string"))
}

/// A user id as a client names one: its decimal text (or number).
pub fn user_id(raw: Option<&Value>) -> Result<i64> {
    let parsed = match raw {
        Some(Value::String(s)) => s.parse().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    };
    parsed.ok_or_else(|| Error::invalid("user_id must be a user's id"))
}

/// The `seq` of a message a client points at: required, at least 1.
pub fn message_seq(raw: Option<&Value>) -> Result<i64> {
    match seq_cursor(raw, "seq")? {
        Some(seq) if seq >= 1 => Ok(seq),
        _ => Err(Error::invalid("seq must be a positive integer")),
    }
}

/// The message a send answers: absent or null for none, else a [`message_seq`].
pub fn reply_to(raw: Option<&Value>) -> Result<Option<i64>> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        seq => message_seq(seq).map(Some),
    }
}

/// Most files one message carries.
pub const MAX_ATTACHMENTS: usize = 10;
/// Longest file name kept, in characters (a file system's usual 255 bytes
/// would cut a UTF-8 name mid-character).
const MAX_FILE_NAME_CHARS: usize = 200;

/// A message's `attachments`: absent, or an array of at most
/// [`MAX_ATTACHMENTS`] different attachment ids (strings).
pub fn attachment_ids(raw: Option<&Value>) -> Result<Vec<String>> {
    let bad = || {
        Error::invalid(format!(
            "attachments must be an array of at most {MAX_ATTACHMENTS} different attachment ids"
        ))
    };
    let list = match raw {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) if list.len() <= MAX_ATTACHMENTS => list,
        Some(_) => return Err(bad()),
    };
    let mut ids: Vec<String> = Vec::with_capacity(list.len());
    for id in list {
        match id {
            Value::String(id) if id.len() <= MAX_RID_CHARS && !ids.contains(id) => {
                ids.push(id.clone());
            }
            _ => return Err(bad()),
        }
    }
    Ok(ids)
}

/// An uploaded file's name, as it is shown and offered for saving: only its
/// last path component (so `../../etc/passwd` is `passwd`), without control,
/// bidirectional or invisible characters, trimmed; `file` when nothing is
/// left. It never names a path on the server: files are kept by their hash.
pub fn file_name(raw: Option<&str>) -> Result<String> {
    let raw = raw.unwrap_or("");
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|&c| !c.is_control() && !is_bidi_control(c) && !is_invisible(c))
        .collect();
    let name = cleaned.trim().trim_start_matches('.').trim();
    if name.chars().count() > MAX_FILE_NAME_CHARS {
        return Err(Error::invalid(format!(
            "name must be at most {MAX_FILE_NAME_CHARS} characters"
        )));
    }
    Ok(if name.is_empty() { "file" } else { name }.to_owned())
}

/// A reaction: 1..=32 bytes with no ASCII letter, digit, space or control
/// character — an emoji (or a few), not a word.
pub fn emoji(raw: Option<&Value>) -> Result<String> {
    let bad = || Error::invalid("emoji must be an emoji");
    let Some(Value::String(text)) = raw else {
        return Err(bad());
    };
    let wordy = text
        .chars()
        .any(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || c.is_control());
    if text.len() > MAX_EMOJI_BYTES || wordy || !has_visible(text) {
        return Err(bad());
    }
    Ok(text.clone())
}

/// A typing flag: a boolean; absent means "typing".
pub fn typing(raw: Option<&Value>) -> Result<bool> {
    match raw {
        None | Some(Value::Null) => Ok(true),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err(Error::invalid("typing must be true or false")),
    }
}

/// A search: 1..=200 characters, read as its words (runs of letters and
/// digits), of which the first 10 count. A query with no word is refused.
pub fn search_words(raw: Option<&Value>) -> Result<Vec<String>> {
    let bad = || Error::invalid("q must be 1 to 200 characters with a word in it");
    let Some(Value::String(text)) = raw else {
        return Err(bad());
    };
    if text.chars().count() > MAX_SEARCH_CHARS {
        return Err(bad());
    }
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_SEARCH_WORDS)
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return Err(bad());
    }
    Ok(words)
}

/// A `seq` cursor from JSON (number) or a query string (already parsed to text).
pub fn seq_cursor(raw: Option<&Value>, what: &'static str) -> Result<Option<i64>> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v >= 0 => Ok(Some(v)),
            _ => Err(Error::invalid(format!(
                "{what} must be a non-negative integer"
            ))),
        },
        Some(Value::String(s)) => match s.parse::<i64>() {
            Ok(v) if v >= 0 => Ok(Some(v)),
            _ => Err(Error::invalid(format!(
                "{what} must be a non-negative integer"
            ))),
        },
        Some(_) => Err(Error::invalid(format!(
            "{what} must be a non-negative integer"
        ))),
    }
}

/// A page size: at least 1; anything above the maximum is served as the maximum.
pub fn page_limit(raw: Option<&Value>, default: i64, limits: &Limits) -> Result<i64> {
    page_size(seq_cursor(raw, "limit")?, default, limits)
}

/// A page size asked for (see [`page_limit`]), `default` if none was.
pub fn page_size(asked: Option<i64>, default: i64, limits: &Limits) -> Result<i64> {
    match asked {
        None => Ok(default),
        Some(0) => Err(Error::invalid("limit must be at least 1")),
        Some(n) => Ok(n.min(limits.history_page_max)),
    }
}

/// Where a page of the chat list starts: after the chat with this last
/// activity (Unix ms) and room id, in the list's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCursor {
    pub last_activity: i64,
    pub room_id: String,
}

impl ChatCursor {
    /// As the API hands it out (`next_before`): opaque to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.last_activity, self.room_id)
    }
}

/// A chat list cursor, as [`ChatCursor::encode`] wrote it; absent is none.
pub fn chat_cursor(raw: Option<&Value>) -> Result<Option<ChatCursor>> {
    let bad = || Error::invalid("before must be a next_before of an earlier page");
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let (at, room) = text.split_once('.').ok_or_else(bad)?;
            let last_activity = at.parse::<i64>().map_err(|_| bad())?;
            if room.is_empty() || room.len() > MAX_RID_CHARS {
                return Err(bad());
            }
            Ok(Some(ChatCursor {
                last_activity,
                room_id: room.to_owned(),
            }))
        }
        Some(_) => Err(bad()),
    }
}

/// A notification level: `"all"`, `"mentions"` or `"none"`.
pub fn notify_level(raw: &Value) -> Result<NotifyLevel> {
    match raw.as_str() {
        Some("all") => Ok(NotifyLevel::All),
        Some("mentions") => Ok(NotifyLevel::Mentions),
        Some("none") => Ok(NotifyLevel::None),
        _ => Err(Error::invalid(
            "notify must be \"all\", \"mentions\" or \"none\"",
        )),
    }
}

/// Whether `text` mentions `username`: `@username` in any case, the `@` not
/// preceded by a word character (so an email address mentions nobody) and
/// the name followed by a non-word character or the end (so `@bobby` does
/// not mention `bob`). Word characters are letters, digits and `_`.
pub fn mentions(text: &str, username: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let name = username.as_bytes();
    text.match_indices('@').any(|(at, _)| {
        if text[..at].chars().next_back().is_some_and(is_word) {
            return false;
        }
        let rest = &text[at + 1..];
        // Usernames are ASCII: bytes that match one are whole characters.
        rest.len() >= name.len()
            && rest.as_bytes()[..name.len()].eq_ignore_ascii_case(name)
            && !rest[name.len()..].chars().next().is_some_and(is_word)
    })
}

/// Longest push endpoint: real ones are a few hundred bytes.
const MAX_PUSH_ENDPOINT_BYTES: usize = 2048;
/// A browser's P-256 public key, uncompressed (RFC 8291 §3.1).
const PUSH_KEY_BYTES: usize = 65;
/// A browser's authentication secret (RFC 8291 §3.2).
const PUSH_AUTH_BYTES: usize = 16;

/// base64url as browsers write a subscription's keys (unpadded); padding is
/// tolerated when decoding.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A browser's `PushSubscription` as its JSON reads:
/// `{endpoint, keys: {p256dh, auth}}` (other fields, such as
/// `expirationTime`, are ignored). The endpoint is an https URL of at most
/// 2,048 bytes on a host of the internet: the server POSTs to it, so a local
/// or private address would let any user make the server call into its own
/// network (SSRF). `allow_http` (`--push-allow-http`, for tests) lifts both
/// rules. The keys are base64url: a P-256 point and a 16-byte secret; they
/// are kept unpadded.
pub fn push_subscription(raw: &Value, allow_http: bool) -> Result<PushEndpoint> {
    let keys = field(raw, "keys");
    Ok(PushEndpoint {
        url: push_endpoint(field(raw, "endpoint"), allow_http)?,
        p256dh: push_key(field(keys, "p256dh"))?,
        auth: push_auth(field(keys, "auth"))?,
    })
}

fn push_endpoint(raw: &Value, allow_http: bool) -> Result<String> {
    let Some(text) = raw.as_str().filter(|t| t.len() <= MAX_PUSH_ENDPOINT_BYTES) else {
        return Err(Error::invalid(
            "endpoint must be a URL of at most 2,048 bytes",
        ));
    };
    let url = url::Url::parse(text).map_err(|_| Error::invalid("endpoint must be a URL"))?;
    let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
    if !scheme_ok {
        return Err(Error::invalid("endpoint must be an https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(
            "endpoint must not carry a user name, password or fragment",
        ));
    }
    let local = is_local(&url);
    if local && !allow_http {
        return Err(Error::invalid(
            "endpoint must be a push service on the internet, not a local or private address",
        ));
    }
    // What sends the push reads it as an HTTP request's target.
    let url = String::from(url);
    if url.len() > MAX_PUSH_ENDPOINT_BYTES || url.parse::<http::Uri>().is_err() {
        return Err(Error::invalid("endpoint is not a URL a request can go to"));
    }
    Ok(url)
}

/// Longest outgoing webhook URL.
const MAX_WEBHOOK_URL_BYTES: usize = 2048;

/// An outgoing webhook's URL: `http` or `https`, at most 2,048 bytes, with
/// no user name, password or fragment, on a host that is not local or
/// private — the server POSTs to it, so such a host would let any user
/// make the server call into its own network (SSRF) — unless
/// `allow_private` (`--webhook-allow-private`) says the operator wants that.
pub fn webhook_url(raw: &Value, allow_private: bool) -> Result<String> {
    let Some(text) = raw.as_str().filter(|t| t.len() <= MAX_WEBHOOK_URL_BYTES) else {
        return Err(Error::invalid("url must be a URL of at most 2,048 bytes"));
    };
    let url = url::Url::parse(text).map_err(|_| Error::invalid("url must be a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid("url must be an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(
            "url must not carry a user name, password or fragment",
        ));
    }
    let local = is_local(&url);
    if local && !allow_private {
        return Err(Error::invalid(
            "url must be on the internet, not a local or private address",
        ));
    }
    let url = String::from(url);
    if url.len() > MAX_WEBHOOK_URL_BYTES || url.parse::<http::Uri>().is_err() {
        return Err(Error::invalid("url is not a URL a request can go to"));
    }
    Ok(url)
}

fn push_key(raw: &Value) -> Result<String> {
    let point = raw
        .as_str()
        .and_then(|text| BASE64URL.decode(text).ok())
        .filter(|bytes| {
            bytes.len() == PUSH_KEY_BYTES && p256::PublicKey::from_sec1_bytes(bytes).is_ok()
        })
        .ok_or_else(|| {
            Error::invalid("keys.p256dh must be an uncompressed P-256 public key in base64url")
        })?;
    Ok(BASE64URL.encode(point))
}

fn push_auth(raw: &Value) -> Result<String> {
    let secret = raw
        .as_str()
        .and_then(|text| BASE64URL.decode(text).ok())
        .filter(|bytes| bytes.len() == PUSH_AUTH_BYTES)
        .ok_or_else(|| Error::invalid("keys.auth must be 16 bytes in base64url"))?;
    Ok(BASE64URL.encode(secret))
}

/// The bytes of a subscription's key, as [`push_subscription`] kept it.
pub fn push_key_bytes(text: &str) -> Option<Vec<u8>> {
    BASE64URL.decode(text).ok()
}

/// Whether `ip` is an address of the internet: not loopback, private,
/// link-local (where cloud metadata services answer), shared (CGNAT),
/// unspecified, broadcast, multicast, documentation, benchmarking or
/// reserved — nor an IPv6 form of one (mapped, unique local). The server
/// Whether a URL names this machine or a private network (by name or
/// address): where a request of ours must not go unless allowed (SSRF).
fn is_local(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => !is_public_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_public_ip(IpAddr::V6(ip)),
        None => true,
    }
}

/// pushes only to such addresses.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_ip(IpAddr::V4(v4));
            }
            let [first, second, ..] = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && second == 0x0db8))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_names_are_trimmed_bounded_and_removable() {
        assert_eq!(
            display_name(&json!("  Ann Lee ")).unwrap().as_deref(),
            Some("Ann Lee")
        );
        assert_eq!(display_name(&json!(null)).unwrap(), None);
        assert_eq!(display_name(&json!("   ")).unwrap(), None);
        assert_eq!(
            display_name(&json!("é".repeat(64)))
                .unwrap()
                .unwrap()
                .chars()
                .count(),
            64
        );
        for bad in [
            json!("é".repeat(65)),
            json!("a\u{202e}b"),
            json!("a\nb"),
            json!("\u{200b}"),
            json!(5),
        ] {
            assert!(display_name(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_are_case_folded_and_restricted() {
        assert_eq!(username(" Alice_1 ").unwrap(), "alice_1");
        for bad in ["ab", "a b c", "x".repeat(33).as_str(), "émile", "<script>"] {
            assert!(username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_need_one_at_and_no_spaces() {
        assert_eq!(email(" Bob@Example.TEST ").unwrap(), "bob@example.test");
        for bad in ["not-an-email", "@x", "a@", "a@b@c", "a b@c", "a\0@b"] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_bodies_are_trimmed_and_bounded_in_characters() {
        let limits = Limits::default();
        assert_eq!(message_body(&json!("  hi  "), &limits).unwrap(), "hi");
        assert!(matches!(
            message_body(&json!(" \n "), &limits),
            Err(Error::Empty)
        ));
        // 4000 multi-byte characters are fine: the limit counts characters, not bytes.
        assert!(message_body(&json!("é".repeat(4000)), &limits).is_ok());
        assert!(matches!(
            message_body(&json!("x".repeat(4001)), &limits),
            Err(Error::TooLong(4000))
        ));
        assert!(matches!(
            message_body(&json!(42), &limits),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn file_names_lose_paths_and_tricks() {
        assert_eq!(file_name(Some("../../etc/passwd")).unwrap(), "passwd");
        assert_eq!(file_name(Some("C:\\Users\\a\\cv.pdf")).unwrap(), "cv.pdf");
        assert_eq!(file_name(Some("..")).unwrap(), "file");
        assert_eq!(file_name(Some(".htaccess")).unwrap(), "htaccess");
        assert_eq!(file_name(None).unwrap(), "file");
        assert_eq!(
            file_name(Some("evil\u{202E}gpj.exe")).unwrap(),
            "evilgpj.exe"
        );
        assert_eq!(file_name(Some("a\nb\0c.txt")).unwrap(), "abc.txt");
        assert!(file_name(Some(&"x".repeat(201))).is_err());
    }

    #[test]
    fn attachment_id_lists() {
        assert_eq!(attachment_ids(None).unwrap(), Vec::<String>::new());
        assert_eq!(
            attachment_ids(Some(&json!(["a", "b"]))).unwrap(),
            ["a", "b"]
        );
        assert!(attachment_ids(Some(&json!(["a", "a"]))).is_err());
        assert!(attachment_ids(Some(&json!("a"))).is_err());
        assert!(attachment_ids(Some(&json!([1]))).is_err());
        let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert!(attachment_ids(Some(&json!(eleven))).is_err());
    }

    #[test]
    fn cursors_and_limits() {
        let limits = Limits::default();
        assert_eq!(seq_cursor(Some(&json!("7")), "before").unwrap(), Some(7));
        assert!(seq_cursor(Some(&json!(-1)), "before").is_err());
        assert!(seq_cursor(Some(&json!("x")), "before").is_err());
        assert_eq!(page_limit(None, 50, &limits).unwrap(), 50);
        assert_eq!(page_limit(Some(&json!(1000)), 50, &limits).unwrap(), 200);
        assert!(page_limit(Some(&json!(0)), 50, &limits).is_err());
    }

    #[test]
    fn reactions_are_emoji_not_words() {
        assert_eq!(emoji(Some(&json!("👍"))).unwrap(), "👍");
        assert!(emoji(Some(&json!("👩‍👩‍👧"))).is_ok());
        for bad in [
            json!("abc"),
            json!(""),
            json!("👍 "),
            json!(1),
            json!("😀".repeat(9)),
        ] {
            assert!(emoji(Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn searches_are_words() {
        assert_eq!(
            search_words(Some(&json!("Hello, wörld! \"x*"))).unwrap(),
            ["hello", "wörld", "x"]
        );
        assert!(search_words(Some(&json!(" *** "))).is_err());
        assert!(search_words(Some(&json!("x".repeat(201)))).is_err());
    }

    #[test]
    fn group_titles_and_member_lists() {
        assert_eq!(group_title(&json!("  Trip ")).unwrap(), "Trip");
        assert!(group_title(&json!(" ")).is_err());
        assert!(group_title(&json!("x".repeat(81))).is_err());
        assert_eq!(email_list(None).unwrap(), Vec::<String>::new());
        assert!(email_list(Some(&json!(["a@b", 3]))).is_err());
        assert!(email_list(Some(&json!(vec!["a@b"; 101]))).is_err());
    }

    #[test]
    fn forms_and_payloads_are_read_by_the_same_rules() {
        let limits = Limits::default();
        // A form's text (pages) and a JSON string (socket, API) alike.
        assert_eq!(message_text("  hi ", &limits).unwrap(), "hi");
        assert_eq!(message_body(&json!("  hi "), &limits).unwrap(), "hi");
        assert!(message_text(" \u{200B} ", &limits).is_err());
        assert_eq!(group_title_text(" Trip ").unwrap(), "Trip");
        assert!(group_title_text("a\u{202E}b").is_err());
        assert_eq!(email_texts(&["A@B.example"]).unwrap(), ["a@b.example"]);
        assert!(email_texts(&["a@b"; 100]).is_ok());
        assert!(
            email_texts(&["a@b"; 101]).is_err(),
            "the same 100 as email_list"
        );
        assert!(email_texts(&["not an email"]).is_err());

        assert_eq!(reply_to(None).unwrap(), None);
        assert_eq!(reply_to(Some(&json!(null))).unwrap(), None);
        assert_eq!(reply_to(Some(&json!(3))).unwrap(), Some(3));
        assert!(reply_to(Some(&json!(0))).is_err());
        assert_eq!(whom(&json!("me")).unwrap(), Whom::Me);
        assert_eq!(whom(&json!("42")).unwrap(), Whom::User(42));
        assert!(whom(&json!("you")).is_err());

        let body = json!({"seq": "5", "typing": false, "title": " T ", "email": "x@y"});
        let payload = Payload(&body);
        assert_eq!(payload.read_seq().unwrap(), Some(5));
        assert!(!payload.typing().unwrap());
        assert_eq!(payload.title().unwrap(), "T");
        assert_eq!(payload.email().unwrap(), "x@y");
        let empty = json!(null);
        assert_eq!(Payload(&empty).read_seq().unwrap(), None);
        assert!(Payload(&empty).typing().unwrap(), "absent means typing");
        assert!(Payload(&empty).title().is_err());
        assert!(Payload(&json!({"email": 1})).email().is_err());
    }

    #[test]
    fn room_ids_accept_numbers_as_text() {
        assert_eq!(room_id(Some(&json!(12))).unwrap(), "12");
        assert!(room_id(None).is_err());
        assert!(room_id(Some(&json!(""))).is_err());
        assert!(room_id(Some(&json!({}))).is_err());
        assert!(room_id(Some(&json!("a\0"))).is_err());
        assert!(client_id(Some(&json!("x\u{1}"))).is_err());
    }

    #[test]
    fn nothing_visible_is_nothing() {
        let limits = Limits::default();
        for blank in [
            "\u{200B}\u{200B}",
            "\u{2060}\u{FEFF}",
            "\u{3164}",
            " \u{200D} ",
        ] {
            assert!(
                matches!(message_body(&json!(blank), &limits), Err(Error::Empty)),
                "{blank:?}"
            );
            assert!(group_title(&json!(blank)).is_err(), "{blank:?}");
            assert!(emoji(Some(&json!(blank))).is_err(), "{blank:?}");
        }
        assert_eq!(
            message_body(&json!("hi\u{200B}"), &limits).unwrap(),
            "hi\u{200B}"
        );
        assert!(
            emoji(Some(&json!("👩\u{200D}💻"))).is_ok(),
            "joiners inside an emoji are fine"
        );
        assert!(password(&"\u{200B}".repeat(8)).is_err());
        assert!(password("correct horse").is_ok());
    }

    #[test]
    fn titles_refuse_bidirectional_overrides() {
        assert!(group_title(&json!("evil\u{202E}gpj.exe")).is_err());
        assert!(group_title(&json!("\u{2067}x")).is_err());
        assert_eq!(
            group_title(&json!("שלום")).unwrap(),
            "שלום",
            "right-to-left text is fine"
        );
    }

    #[test]
    fn emails_are_nfkc_normalised_and_invisible_characters_refused() {
        assert_eq!(
            email("ＡＬＩＣＥ@Example.test").unwrap(),
            "alice@example.test"
        );
        assert!(email("ali\u{200B}ce@example.test").is_err());
        assert!(email("alice@exa\u{00AD}mple.test").is_err());
    }

    #[test]
    fn notify_levels_are_three_words() {
        assert_eq!(notify_level(&json!("all")).unwrap(), NotifyLevel::All);
        assert_eq!(
            notify_level(&json!("mentions")).unwrap(),
            NotifyLevel::Mentions
        );
        assert_eq!(notify_level(&json!("none")).unwrap(), NotifyLevel::None);
        for bad in [
            json!("ALL"),
            json!("muted"),
            json!(""),
            json!(null),
            json!(1),
        ] {
            assert!(notify_level(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            Payload(&json!({"notify": "none"})).notify().unwrap(),
            NotifyLevel::None
        );
    }

    #[test]
    fn mentions_are_whole_at_names_in_any_case() {
        for yes in [
            "@bob",
            "hi @bob",
            "@BOB, look",
            "(@bob)",
            "@bob.",
            "ping @bob!",
            "@bob-",
            "é @Bob",
            "@bo @bob",
        ] {
            assert!(mentions(yes, "bob"), "{yes:?}");
        }
        for no in [
            "bob", "@bo", "@bobby", "@bob_2", "@bob2", "me@bob", "x_@bob", "é@bob", "@ bob", "@",
            "", "@bobé",
        ] {
            assert!(!mentions(no, "bob"), "{no:?}");
        }
        assert!(mentions("cc @ann.lee now", "ann.lee"));
        assert!(mentions("@ann.lee", "ann"), "a dot ends a name");
    }

    /// A P-256 public key in base64url: uncompressed or compressed.
    fn some_point(compress: bool) -> String {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        let point = p256::SecretKey::from_slice(&[7u8; 32])
            .unwrap()
            .public_key();
        BASE64URL.encode(point.to_encoded_point(compress))
    }

    #[test]
    fn push_subscriptions_need_an_internet_https_endpoint_and_real_keys() {
        let point = some_point(false);
        let auth = BASE64URL.encode([7u8; 16]);
        let subscription = |endpoint: &str| {
            json!({"endpoint": endpoint, "expirationTime": null,
                   "keys": {"p256dh": point, "auth": auth}})
        };
        let ok = subscription("https://push.example.com/x/1?a=b");
        let ok = push_subscription(&ok, false).unwrap();
        assert_eq!(ok.url, "https://push.example.com/x/1?a=b");
        assert_eq!((ok.p256dh, ok.auth), (point.clone(), auth.clone()));
        // Padded keys are read too, and kept unpadded.
        let padded = json!({"endpoint": "https://push.example.com/",
                            "keys": {"p256dh": format!("{point}="), "auth": format!("{auth}==")}});
        assert_eq!(push_subscription(&padded, false).unwrap().auth, auth);

        let long = format!("https://push.example.com/{}", "x".repeat(2048));
        for bad in [
            "http://push.example.com/x",
            "ftp://push.example.com/x",
            "not a url",
            "https://localhost/x",
            "https://push.localhost./x",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:192.168.0.1]/x",
            "https://user:pw@push.example.com/x",
            "https://push.example.com/x#frag",
            long.as_str(),
        ] {
            assert!(
                push_subscription(&subscription(bad), false).is_err(),
                "{bad}"
            );
        }
        // Tests run their push service on loopback, over http.
        for local in ["http://127.0.0.1:9/x", "https://localhost/x"] {
            assert!(
                push_subscription(&subscription(local), true).is_ok(),
                "{local}"
            );
        }

        let not_on_curve = BASE64URL.encode([4u8; 65]);
        let short_auth = BASE64URL.encode([7u8; 15]);
        for (p256dh, auth) in [
            (json!(not_on_curve), json!(auth)),
            (json!(some_point(true)), json!(auth)),
            (json!("***"), json!(auth)),
            (json!(null), json!(auth)),
            (json!(point), json!(short_auth)),
            (json!(point), json!(17)),
        ] {
            let body = json!({"endpoint": "https://push.example.com/",
                              "keys": {"p256dh": p256dh, "auth": auth}});
            assert!(push_subscription(&body, false).is_err(), "{body}");
        }
        let no_keys = json!({"endpoint": "https://push.example.com/"});
        assert!(push_subscription(&no_keys, false).is_err());
    }

    #[test]
    fn public_addresses_are_those_of_the_internet() {
        for public in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public_ip(public.parse().unwrap()), "{public}");
        }
        for local in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public_ip(local.parse().unwrap()), "{local}");
        }
    }
}
