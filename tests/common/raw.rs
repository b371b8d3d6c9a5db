//! Engine.IO / Socket.IO spoken by hand over a raw WebSocket: for tests that
//! must do what no well-behaved client does (stop reading, pipeline, never answer).

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::Server;

/// A raw WebSocket to the Engine.IO endpoint, with a small receive buffer (so
/// that a client that stops reading stalls the server quickly).
pub async fn raw_socket(server: &Server) -> WebSocketStream<TcpStream> {
    let addr: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("WebSocket handshake");
    ws
}

/// The next text frame (Engine.IO packet), or `None` once the connection is closed.
pub async fn next_text(ws: &mut WebSocketStream<TcpStream>) -> Option<String> {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(text))) => return Some(text.to_string()),
            Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Opens the Engine.IO session and connects to the namespace with a token;
/// `Err` with the CONNECT_ERROR packet when refused.
pub async fn raw_connect(
    server: &Server,
    token: &str,
) -> Result<WebSocketStream<TcpStream>, String> {
    let mut ws = raw_socket(server).await;
    let open = next_text(&mut ws).await.expect("open packet");
    assert!(open.starts_with('0'), "{open}");
    let connect = format!("40{}", json!({"token": token}));
    ws.send(WsMessage::Text(connect.into())).await.unwrap();
    // Answer Engine.IO pings (the first comes at once) up to the Socket.IO answer.
    let answer = loop {
        let text = next_text(&mut ws).await.expect("connect answer");
        if text == "2" {
            ws.send(WsMessage::Text("3".into())).await.unwrap();
        } else if text.starts_with('4') {
            break text;
        }
    };
    if answer.starts_with("40{") {
        Ok(ws)
    } else {
        Err(answer)
    }
}

pub async fn raw_connected(server: &Server, token: &str) -> WebSocketStream<TcpStream> {
    raw_connect(server, token).await.expect("connected")
}

/// Emits an event with ack id 0 and returns the ack's first argument.
pub async fn raw_ack(ws: &mut WebSocketStream<TcpStream>, event: &str, data: Value) -> Value {
    let packet = format!("420{}", json!([event, data]));
    ws.send(WsMessage::Text(packet.into())).await.unwrap();
    loop {
        let text = next_text(ws).await.expect("open until the ack");
        if let Some(args) = text.strip_prefix("430") {
            let args: Value = serde_json::from_str(args).unwrap();
            return args[0].clone();
        }
    }
}

/// Opens an Engine.IO long-polling session and connects it to the namespace
/// with `token`, answering pings (the first comes at once) until the
/// Socket.IO answer arrives; returns the client and the session's URL.
pub async fn polling_connected(server: &Server, token: &str) -> (reqwest::Client, String) {
    let http = reqwest::Client::new();
    let base = format!("{}/socket.io/?EIO=4&transport=polling", server.url);
    let open = http.get(&base).send().await.unwrap().text().await.unwrap();
    let open: Value = serde_json::from_str(open.strip_prefix('0').expect("open packet")).unwrap();
    let session = format!("{base}&sid={}", open["sid"].as_str().unwrap());
    let connect = format!("40{}", json!({ "token": token }));
    let r = http.post(&session).body(connect).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    loop {
        let polled = http
            .get(&session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if polled.split('\u{1e}').any(|p| p.starts_with("40{")) {
            return (http, session);
        }
        assert!(polled.split('\u{1e}').all(|p| p == "2"), "{polled}");
        http.post(&session).body("3").send().await.unwrap();
    }
}
