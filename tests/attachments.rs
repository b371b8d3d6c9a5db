//! Attachments over the JSON API and Socket.IO (docs/protocol.md,
//! "Attachments"), on the real server: uploads, what is kept of them, who
//! may fetch them back, how they are served, and the attacks on the upload
//! path (oversize files, decompression bombs, a lying content type, path
//! tricks in names, a removed member's download, slow uploads).

mod common;

use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use common::{Api, Server, Socket, TestUser};
use serde_json::{Value, json};

/// A raw response: status, headers and body bytes.
struct Fetched {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn upload(api: &Api, user: &TestUser, rid: &str, name: &str, bytes: Vec<u8>) -> Fetched {
    upload_typed(api, user, rid, name, bytes, "application/octet-stream").await
}

/// Uploads `bytes` claiming `content_type` (which the server must ignore).
async fn upload_typed(
    api: &Api,
    user: &TestUser,
    rid: &str,
    name: &str,
    bytes: Vec<u8>,
    content_type: &str,
) -> Fetched {
    let url = format!("{}/rooms/{rid}/attachments", api.base);
    let res = api
        .http
        .post(url)
        .query(&[("name", name)])
        .bearer_auth(&user.token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("upload");
    fetched(res).await
}

async fn fetched(res: reqwest::Response) -> Fetched {
    Fetched {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: res.bytes().await.expect("body").to_vec(),
    }
}

/// GETs a path of the server (an attachment's `url`) as `user`.
async fn get(server: &Server, user: &TestUser, path: &str) -> Fetched {
    let res = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("get");
    fetched(res).await
}

/// A `width`×`height` picture with some detail, encoded as `format`.
fn picture(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .expect("encode");
    out.into_inner()
}

/// What a phone camera adds to a photo: an APP1 Exif segment, here with an
/// ImageDescription that stands for the place it was taken.
const SECRET: &str = "GPS 52.5200N 13.4050E home";

fn jpeg_with_exif(width: u32, height: u32) -> Vec<u8> {
    let jpeg = picture(width, height, image::ImageFormat::Jpeg);
    // TIFF, little-endian: header, one IFD with one ASCII entry, then the text.
    let text = format!("{SECRET}\0");
    let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
    tiff.extend_from_slice(&0x010Eu16.to_le_bytes());
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&(text.len() as u32).to_le_bytes());
    tiff.extend_from_slice(&26u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(text.as_bytes());
    let mut segment = b"Exif\0\0".to_vec();
    segment.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((segment.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A small PNG whose header claims `width`×`height` (its CRC fixed up): a
/// decompression bomb's shape, without its size on the wire.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = picture(8, 8, image::ImageFormat::Png);
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` (recursively), as paths.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// The kept files (not the staging area) of a server's default file store.
fn kept_files(server: &Server) -> Vec<std::path::PathBuf> {
    let root = server.data_dir.path().join("files");
    files_under(&root)
        .into_iter()
        .filter(|p| !p.starts_with(root.join("tmp")))
        .collect()
}

/// No upload is left half-written in the file store's staging area.
fn assert_nothing_staged(server: &Server) {
    let staged = files_under(&server.data_dir.path().join("files").join("tmp"));
    assert!(staged.is_empty(), "{staged:?}");
}

/// `user` deletes their message `seq`; the deleted message as answered.
async fn delete_message(api: &Api, user: &TestUser, rid: &str, seq: i64) -> Value {
    let path = format!("/rooms/{rid}/messages/{seq}");
    let deleted = api.call_as(user, "DELETE", &path, None).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    deleted.body
}

/// Waits (10 s at most) until `files` lists none: the sweep took them.
async fn gone_within_10_s(files: impl Fn() -> Vec<std::path::PathBuf>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = files();
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "files left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(api: &Api, user: &TestUser, rid: &str, body: Value) -> common::Reply {
    api.call_as(user, "POST", &format!("/rooms/{rid}/messages"), Some(body))
        .await
}

#[tokio::test]
async fn a_photo_is_kept_without_its_metadata_with_a_thumbnail_and_reaches_the_room() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    let [bob_socket] = server.hearing_all([&bob]).await;

    let photo = jpeg_with_exif(640, 480);
    assert!(contains(&photo, SECRET.as_bytes()));
    let up = upload(&api, &ann, &rid, "holiday.jpg", photo).await;
    assert_eq!(up.status, 201, "{}", String::from_utf8_lossy(&up.body));
    let attachment = up.json();
    assert_eq!(attachment["name"], "holiday.jpg");
    assert_eq!(attachment["content_type"], "image/jpeg");
    assert_eq!(attachment["width"], 640);
    assert_eq!(attachment["height"], 480);
    let id = attachment["id"].as_str().unwrap();
    assert!(id.len() >= 22, "ids are unguessable: {id}");
    assert_eq!(attachment["url"], format!("/api/v1/attachments/{id}"));
    assert_eq!(
        attachment["thumbnail_url"],
        format!("/api/v1/attachments/{id}/thumbnail")
    );

    // Before it is sent, it is the uploader's alone.
    let early = get(&server, &bob, attachment["url"].as_str().unwrap()).await;
    assert_eq!(early.status, 404);

    let sent = send(
        &api,
        &ann,
        &rid,
        json!({"message": "line one\nsee https://example.org and **this**", "attachments": [id]}),
    )
    .await;
    assert_eq!(sent.status, 201, "{:?}", sent.body);
    assert_eq!(sent.body["attachments"][0]["id"], id);
    let heard = bob_socket
        .wait_for_match("message", |m| m["attachments"][0]["id"] == id)
        .await;
    assert_eq!(heard["attachments"][0]["width"], 640);
    let history = api.history(&bob, &rid, "").await;
    assert_eq!(history.last().unwrap()["attachments"][0]["id"], id);

    let file = get(&server, &bob, attachment["url"].as_str().unwrap()).await;
    assert_eq!(file.status, 200);
    assert_eq!(file.header("content-type"), "image/jpeg");
    assert_eq!(file.header("x-content-type-options"), "nosniff");
    assert!(file.header("content-security-policy").contains("sandbox"));
    assert!(file.header("content-disposition").starts_with("inline;"));
    assert!(
        !contains(&file.body, SECRET.as_bytes()),
        "the place the photo was taken must not be served"
    );
    assert_eq!(file.body.len() as u64, attachment["size"].as_u64().unwrap());
    let decoded = image::load_from_memory(&file.body).expect("still a picture");
    assert_eq!((decoded.width(), decoded.height()), (640, 480));

    let thumb = get(&server, &bob, attachment["thumbnail_url"].as_str().unwrap()).await;
    assert_eq!(thumb.status, 200);
    let small = image::load_from_memory(&thumb.body).expect("a thumbnail");
    assert!(small.width() <= 400 && small.height() <= 400);
    assert_eq!(small.width() * 3, small.height() * 4, "the same shape");

    // A stranger cannot fetch it, whatever they know of its link.
    let eve = api.register("eve").await;
    let stolen = get(&server, &eve, attachment["url"].as_str().unwrap()).await;
    assert_eq!(stolen.status, 403);
    assert_eq!(stolen.json()["error"]["code"], "not_member");
}

#[tokio::test]
async fn a_removed_member_can_no_longer_fetch_the_rooms_files() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob, cat] = api.register_each(["ann", "bob", "cat"]).await;
    let rid = api.create_group(&ann, "trip", &[&bob, &cat]).await;
    let up = upload(&api, &ann, &rid, "plan.pdf", b"%PDF-1.4\n%plan\n".to_vec()).await;
    assert_eq!(up.status, 201);
    assert_eq!(up.json()["content_type"], "application/pdf");
    let id = up.json()["id"].as_str().unwrap().to_owned();
    let sent = send(&api, &ann, &rid, json!({"attachments": [id]})).await;
    assert_eq!(sent.status, 201, "a file needs no caption: {:?}", sent.body);
    assert_eq!(sent.body["message"], "");
    let url = format!("/api/v1/attachments/{id}");
    assert_eq!(get(&server, &cat, &url).await.status, 200);

    api.remove_member(&ann, &rid, &cat).await;
    let after = get(&server, &cat, &url).await;
    assert_eq!(after.status, 403);
    assert_eq!(after.json()["error"]["code"], "not_member");
    assert_eq!(get(&server, &bob, &url).await.status, 200);
}

#[tokio::test]
async fn html_and_svg_uploads_are_served_so_that_no_script_runs() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    let page = b"<!doctype html><html><body><script>alert(document.cookie)</script>".to_vec();
    let svg =
        br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec();
    for (name, bytes, claimed) in [
        ("page.html", page, "text/html"),
        ("logo.svg", svg, "image/svg+xml"),
        // A page dressed as a picture.
        (
            "cat.png",
            b"<html><script>alert(2)</script>".to_vec(),
            "image/png",
        ),
    ] {
        let up = upload_typed(&api, &ann, &rid, name, bytes.clone(), claimed).await;
        assert_eq!(up.status, 201, "{name}");
        let attachment = up.json();
        assert_eq!(
            attachment["content_type"], "application/octet-stream",
            "{name}: the type comes from the bytes, never the client"
        );
        assert_eq!(attachment["thumbnail_url"], Value::Null);
        let id = attachment["id"].as_str().unwrap();
        let sent = send(
            &api,
            &ann,
            &rid,
            json!({"message": name, "attachments": [id]}),
        )
        .await;
        assert_eq!(sent.status, 201);
        let served = get(&server, &bob, attachment["url"].as_str().unwrap()).await;
        assert_eq!(served.status, 200);
        assert_eq!(served.body, bytes, "kept as sent");
        assert_eq!(served.header("content-type"), "application/octet-stream");
        assert_eq!(served.header("x-content-type-options"), "nosniff");
        assert!(
            served
                .header("content-disposition")
                .starts_with("attachment;"),
            "{name} is a download, not a page"
        );
        let csp = served.header("content-security-policy");
        assert!(csp.contains("sandbox") && csp.contains("default-src 'none'"));
    }
}

#[tokio::test]
async fn oversize_uploads_and_decompression_bombs_are_refused_and_nothing_is_kept() {
    let server = Server::start_with(&[
        "--max-upload-bytes",
        "100000",
        "--max-image-pixels",
        "1000000",
    ]);
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let rid = api.open_chat(&ann, &bob).await;

    let big = upload(&api, &ann, &rid, "big.bin", vec![7u8; 100_001]).await;
    assert_eq!(big.status, 413);
    assert_eq!(big.json()["error"]["code"], "too_large");
    let exact = upload(&api, &ann, &rid, "exact.bin", vec![7u8; 100_000]).await;
    assert_eq!(exact.status, 201, "the limit itself is allowed");

    for (width, height) in [(100_000, 100_000), (1001, 1000), (2_000_000, 1)] {
        let bomb = upload(&api, &ann, &rid, "bomb.png", png_claiming(width, height)).await;
        assert_eq!(bomb.status, 422, "{width}×{height}");
        assert_eq!(bomb.json()["error"]["code"], "invalid");
    }
    // Exactly at the pixel limit (one colour, so that it is small on the wire).
    let mut plain = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::new(1000, 1000))
        .write_to(&mut plain, image::ImageFormat::Png)
        .unwrap();
    let fine = upload(&api, &ann, &rid, "fine.png", plain.into_inner()).await;
    assert_eq!(fine.status, 201, "{}", String::from_utf8_lossy(&fine.body));

    let empty = upload(&api, &ann, &rid, "empty.txt", Vec::new()).await;
    assert_eq!(empty.status, 422);

    // Only the two accepted files are kept (one with its thumbnail).
    assert_eq!(kept_files(&server).len(), 3, "{:?}", kept_files(&server));
    assert_nothing_staged(&server);
}

#[tokio::test]
async fn path_tricks_in_names_name_nothing_on_the_server() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    for (name, shown) in [
        ("../../../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/absolute/file.txt", "file.txt"),
        ("..", "file"),
        ("a\u{202E}gpj.exe", "agpj.exe"),
        ("line\r\nbreak.txt", "linebreak.txt"),
    ] {
        let up = upload(&api, &ann, &rid, name, b"hello".to_vec()).await;
        assert_eq!(up.status, 201, "{name:?}");
        assert_eq!(up.json()["name"], shown, "{name:?}");
        let id = up.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(
            send(&api, &ann, &rid, json!({"attachments": [id]}))
                .await
                .status,
            201
        );
        let served = get(&server, &bob, &format!("/api/v1/attachments/{id}")).await;
        let disposition = served.header("content-disposition").to_owned();
        assert!(
            !disposition.contains('/') && !disposition.contains("\\\\"),
            "{disposition}"
        );
    }
    // The same bytes are kept once, by their hash, inside the file store.
    let kept = kept_files(&server);
    assert_eq!(kept.len(), 1, "{kept:?}");
    let name = kept[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}"
    );
    assert!(!server.data_dir.path().join("etc").exists());
}

#[tokio::test]
async fn attachments_are_the_senders_own_and_sent_once() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob, cat] = api.register_each(["ann", "bob", "cat"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    let other = api.open_chat(&ann, &cat).await;
    let id = upload(&api, &ann, &rid, "a.txt", b"a".to_vec())
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Someone else's upload, or one made for another room, cannot be sent.
    let by_bob = send(
        &api,
        &bob,
        &rid,
        json!({"message": "mine", "attachments": [id]}),
    )
    .await;
    assert_eq!(by_bob.status, 404);
    assert_eq!(by_bob.code(), "not_found");
    let elsewhere = send(
        &api,
        &ann,
        &other,
        json!({"message": "x", "attachments": [id]}),
    )
    .await;
    assert_eq!(elsewhere.status, 404);
    let unknown = send(
        &api,
        &ann,
        &rid,
        json!({"message": "x", "attachments": ["nope"]}),
    )
    .await;
    assert_eq!(unknown.status, 404);
    let nothing = send(&api, &ann, &rid, json!({"message": "", "attachments": []})).await;
    assert_eq!(nothing.code(), "empty");
    let bad = send(
        &api,
        &ann,
        &rid,
        json!({"message": "x", "attachments": "id"}),
    )
    .await;
    assert_eq!(bad.code(), "invalid");
    assert!(
        api.history(&ann, &rid, "").await.is_empty(),
        "nothing was stored"
    );

    // Sent once; a resend of that message finds it; another message cannot take it.
    let first = send(
        &api,
        &ann,
        &rid,
        json!({"message": "one", "client_id": "c1", "attachments": [id]}),
    )
    .await;
    assert_eq!(first.status, 201);
    let again = send(
        &api,
        &ann,
        &rid,
        json!({"message": "one", "client_id": "c1", "attachments": [id]}),
    )
    .await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(again.body["seq"], first.body["seq"]);
    let twice = send(
        &api,
        &ann,
        &rid,
        json!({"message": "two", "attachments": [id]}),
    )
    .await;
    assert_eq!(twice.status, 404, "{:?}", twice.body);
    assert_eq!(api.history(&ann, &rid, "").await.len(), 1);

    // Over Socket.IO alike.
    let socket = Socket::connect(&server.url, &ann.token).await;
    let id2 = upload(&api, &ann, &rid, "b.txt", b"b".to_vec())
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ack = socket
        .ack(
            "outgoing",
            json!({"rid": rid, "message": "", "attachments": [id2]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["attachments"][0]["name"], "b.txt");
}

#[tokio::test]
async fn deleting_a_message_deletes_its_files() {
    let server = Server::start_with(&["--file-sweep-grace-secs", "0"]);
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    let up = upload(
        &api,
        &ann,
        &rid,
        "p.png",
        picture(50, 40, image::ImageFormat::Png),
    )
    .await;
    let id = up.json()["id"].as_str().unwrap().to_owned();
    let sent = send(
        &api,
        &ann,
        &rid,
        json!({"message": "pic", "attachments": [id]}),
    )
    .await;
    let seq = sent.body["seq"].as_i64().unwrap();
    assert_eq!(
        kept_files(&server).len(),
        2,
        "the picture and its thumbnail"
    );

    let deleted = delete_message(&api, &ann, &rid, seq).await;
    assert_eq!(deleted["attachments"], json!([]));
    let url = format!("/api/v1/attachments/{id}");
    assert_eq!(get(&server, &bob, &url).await.status, 404);
    assert_eq!(
        get(&server, &bob, &format!("{url}/thumbnail")).await.status,
        404
    );
    gone_within_10_s(|| kept_files(&server)).await;
}

#[tokio::test]
async fn slow_uploads_cannot_take_every_place() {
    let server = Server::start();
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    // Three uploads that trickle and never end: ann's budget of uploads in flight.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(trickle(&api, &ann, &rid).await);
    }
    // Give them time to be admitted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fourth = upload(&api, &ann, &rid, "d.txt", b"d".to_vec()).await;
    assert_eq!(fourth.status, 429);
    assert_eq!(fourth.json()["error"]["code"], "rate_limited");
    // Bob's budget is his own.
    let bobs = upload(&api, &bob, &rid, "b.txt", b"b".to_vec()).await;
    assert_eq!(bobs.status, 201);
    // Finishing one frees its place.
    let (feed, request) = held.pop().unwrap();
    drop(feed);
    let done = request.await.unwrap().unwrap();
    assert_eq!(done.status(), 201);
    let fifth = upload(&api, &ann, &rid, "e.txt", b"e".to_vec()).await;
    assert_eq!(fifth.status, 201);
}

type Chunk = Result<Vec<u8>, std::io::Error>;

/// An upload by `user` that has sent 10 bytes and waits for more: what is
/// sent into the channel goes on, dropping it ends the file. The request
/// runs as a task; its handle answers the response.
async fn trickle(
    api: &Api,
    user: &TestUser,
    rid: &str,
) -> (
    tokio::sync::mpsc::Sender<Chunk>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let (feed, mut chunks) = tokio::sync::mpsc::channel::<Chunk>(1);
    feed.send(Ok(vec![1u8; 10])).await.unwrap();
    let body = futures_util::stream::poll_fn(move |cx| chunks.poll_recv(cx));
    let request = api
        .http
        .post(format!("{}/rooms/{rid}/attachments", api.base))
        .bearer_auth(&user.token)
        .body(reqwest::Body::wrap_stream(body))
        .send();
    (feed, tokio::spawn(request))
}

#[tokio::test]
async fn an_upload_that_goes_silent_is_dropped_and_frees_its_place() {
    let server = Server::start_with(&["--upload-idle-secs", "1"]);
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    let started = std::time::Instant::now();
    let (feed, request) = trickle(&api, &ann, &rid).await;
    let res = request.await.unwrap().unwrap();
    assert_eq!(res.status(), 422);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sent nothing"),
        "{body}"
    );
    drop(feed);
    assert_nothing_staged(&server);
}

#[tokio::test]
async fn on_s3_the_files_live_in_the_bucket_and_go_with_their_message() {
    use common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
    let s3 = S3Server::start().await;
    let server = Server::start_with(&[
        "--s3-bucket",
        BUCKET,
        "--s3-endpoint",
        &s3.endpoint,
        "--s3-access-key-id",
        ACCESS_KEY,
        "--s3-secret-access-key",
        SECRET_KEY,
        "--file-sweep-grace-secs",
        "0",
    ]);
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    let photo = jpeg_with_exif(300, 200);
    let up = upload(&api, &ann, &rid, "photo.jpg", photo).await;
    assert_eq!(up.status, 201, "{}", String::from_utf8_lossy(&up.body));
    let attachment = up.json();
    let id = attachment["id"].as_str().unwrap().to_owned();
    let sent = send(
        &api,
        &ann,
        &rid,
        json!({"message": "from S3", "attachments": [id]}),
    )
    .await;
    assert_eq!(sent.status, 201);
    assert_eq!(
        s3.objects().len(),
        2,
        "the photo and its thumbnail: {:?}",
        s3.objects()
    );
    assert!(kept_files(&server).is_empty(), "nothing on the node's disk");

    let file = get(&server, &bob, attachment["url"].as_str().unwrap()).await;
    assert_eq!(file.status, 200);
    assert_eq!(file.body.len() as u64, attachment["size"].as_u64().unwrap());
    assert!(!contains(&file.body, SECRET.as_bytes()));
    let thumb = get(&server, &bob, attachment["thumbnail_url"].as_str().unwrap()).await;
    assert_eq!(thumb.status, 200);

    let seq = sent.body["seq"].as_i64().unwrap();
    delete_message(&api, &ann, &rid, seq).await;
    gone_within_10_s(|| s3.objects()).await;
}

#[tokio::test]
async fn an_upload_that_trickles_past_its_deadline_is_dropped() {
    let server = Server::start_with(&["--upload-deadline-secs", "2"]);
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    let started = std::time::Instant::now();
    let (feed, request) = trickle(&api, &ann, &rid).await;
    // A byte every 200 ms: never silent, never done.
    let feeding = tokio::spawn(async move {
        while feed.send(Ok(vec![1u8])).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let res = request.await.unwrap().unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than 2 s"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    feeding.abort();
    assert_nothing_staged(&server);
    // Its place is free again. (A fresh client: the server closed the
    // connection it answered early on, and a pooled client may not know yet.)
    assert_eq!(
        upload(&server.api(), &ann, &rid, "a.txt", b"a".to_vec())
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn an_upload_while_s3_is_down_fails_cleanly_and_works_once_it_is_back() {
    use common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
    let s3 = S3Server::start().await;
    let server = Server::start_with(&[
        "--s3-bucket",
        BUCKET,
        "--s3-endpoint",
        &s3.endpoint,
        "--s3-access-key-id",
        ACCESS_KEY,
        "--s3-secret-access-key",
        SECRET_KEY,
    ]);
    let api = server.api();
    let [ann, bob] = api.register_each(["ann", "bob"]).await;
    let rid = api.open_chat(&ann, &bob).await;
    let kept = s3.stop();
    let down = upload(&api, &ann, &rid, "a.txt", b"while down".to_vec()).await;
    assert_eq!(down.status, 500, "{}", String::from_utf8_lossy(&down.body));
    assert_eq!(down.json()["error"]["code"], "internal");
    let s3 = S3Server::restart(kept).await;
    assert!(
        s3.objects().is_empty(),
        "nothing half-kept: {:?}",
        s3.objects()
    );
    let up = upload(&api, &ann, &rid, "a.txt", b"once back".to_vec()).await;
    assert_eq!(up.status, 201, "{}", String::from_utf8_lossy(&up.body));
    let id = up.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        send(&api, &ann, &rid, json!({"attachments": [id]}))
            .await
            .status,
        201
    );
    let file = get(&server, &bob, &format!("/api/v1/attachments/{id}")).await;
    assert_eq!(file.body, b"once back");
    // The node's staging area (DATA_DIR/staging) holds nothing of the failed upload.
    let staging = files_under(&server.data_dir.path().join("staging"));
    assert!(staging.is_empty(), "{staging:?}");
}
