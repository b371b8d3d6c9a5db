//! A small SMTP server in the test's process, on a loopback port: the
//! receiving side of RFC 5321 (greeting, EHLO/HELO, MAIL, RCPT, DATA with
//! its dot-stuffing, RSET, NOOP, QUIT), keeping every message it is given.
//!
//! Written here rather than taken from a crate: the Rust SMTP servers are
//! whole mail servers or thread-per-connection libraries, and a test also
//! needs this one to misbehave on purpose — to accept connections and never
//! answer ([`SmtpServer::hang_next`]), as a wedged relay does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope's sender (MAIL FROM), without its angle brackets.
    pub from: String,
    /// The envelope's recipients (RCPT TO).
    pub to: Vec<String>,
    /// The message, headers and body, dot-stuffing undone, CRLF line ends.
    pub data: String,
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    /// Connections still to be accepted and left unanswered.
    to_hang: usize,
    /// Unanswered connections that the client closed.
    hung_up: usize,
}

/// The running server; stops when dropped.
pub struct SmtpServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl SmtpServer {
    /// Listens on a free loopback port.
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let hang = {
                        let mut state = state.lock().unwrap();
                        let hang = state.to_hang > 0;
                        state.to_hang = state.to_hang.saturating_sub(1);
                        hang
                    };
                    if hang {
                        hang_up_on(stream, &state).await;
                    } else {
                        // A client that breaks off mid-conversation is its business.
                        let _ = converse(stream, &state).await;
                    }
                });
            }
        });
        SmtpServer {
            port,
            state,
            accept,
        }
    }

    /// The `--smtp-url` that names it (plain SMTP).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The next `n` connections are accepted and never answered, not even
    /// greeted: as a relay that hangs.
    pub fn hang_next(&self, n: usize) {
        self.state.lock().unwrap().to_hang = n;
    }

    /// How many unanswered connections the client closed.
    pub fn hung_up(&self) -> usize {
        self.state.lock().unwrap().hung_up
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().unwrap().messages.clone()
    }

    /// Waits (10 s at most) until `count` messages arrived, then returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.messages();
            if got.len() >= count || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Says nothing, reads until the client gives up, and counts that.
async fn hang_up_on(mut stream: TcpStream, state: &Mutex<State>) {
    let mut buf = [0u8; 512];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    state.lock().unwrap().hung_up += 1;
}

/// One SMTP session, until QUIT or the client goes.
async fn converse(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 smtp.test ESMTP ready\r\n").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-smtp.test greets you\r\n250 8BITMIME\r\n",
            "HELO" => b"250 smtp.test\r\n",
            "MAIL" => match path_of(command, "MAIL FROM:") {
                Some(sender) => {
                    (from, to) = (Some(sender), Vec::new());
                    b"250 OK\r\n"
                }
                None => b"501 syntax: MAIL FROM:<address>\r\n",
            },
            "RCPT" => match (&from, path_of(command, "RCPT TO:")) {
                (None, _) => b"503 MAIL first\r\n",
                (Some(_), Some(recipient)) => {
                    to.push(recipient);
                    b"250 OK\r\n"
                }
                (Some(_), None) => b"501 syntax: RCPT TO:<address>\r\n",
            },
            "DATA" if to.is_empty() => b"503 RCPT first\r\n",
            "DATA" => {
                write
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let data = read_data(&mut lines).await?;
                let message = Received {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                };
                state.lock().unwrap().messages.push(message);
                b"250 OK queued\r\n"
            }
            "RSET" => {
                (from, to) = (None, Vec::new());
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"500 unrecognised command\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The `<address>` after `prefix` (case-insensitive), parameters ignored.
fn path_of(command: &str, prefix: &str) -> Option<String> {
    let head = command.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = command[prefix.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

/// The lines of a DATA section up to the lone ".", each leading dot of a
/// stuffed line taken off (RFC 5321 §4.5.2).
async fn read_data(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if text == "." {
            return Ok(data);
        }
        data.push_str(text.strip_prefix('.').unwrap_or(text));
        data.push_str("\r\n");
    }
}
