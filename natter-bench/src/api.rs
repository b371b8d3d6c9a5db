//! The untimed setup over the contract's JSON API: register users, log them
//! in, open direct rooms. Everything runs with bounded concurrency.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

/// Password of every bench user (the contract wants at least 8 characters).
const PASSWORD: &str = "bench-password-1";

/// A response's status and its body as JSON (or as a JSON string, when it is not JSON).
async fn json_of(resp: reqwest::Response) -> Result<(u16, Value)> {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub token: String,
}

/// The JSON API of one server.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// Requests in flight at most during setup.
    pub concurrency: usize,
}

impl Api {
    pub fn new(base: &str, concurrency: usize) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(concurrency)
            .build()?;
        Ok(Self {
            http,
            base: base.to_owned(),
            concurrency: concurrency.max(1),
        })
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Result<(u16, Value)> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.with_context(|| format!("POST {path}"))?;
        json_of(resp).await
    }

    /// `GET path` as `token`: the status and the JSON body.
    pub async fn get(&self, path: &str, token: &str) -> Result<(u16, Value)> {
        let (status, bytes) = self.download(path, token).await?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// `POST /api/v1/rooms/{rid}/attachments?name=…` with `body` as the file:
    /// the status and the JSON body (an attachment, or an error).
    pub async fn upload(
        &self,
        rid: &str,
        name: &str,
        body: Vec<u8>,
        token: &str,
    ) -> Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}/api/v1/rooms/{rid}/attachments", self.base))
            .query(&[("name", name)])
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .context("upload")?;
        json_of(resp).await
    }

    /// `POST /api/v1/rooms/{rid}/messages` as `token`.
    pub async fn send(&self, rid: &str, body: &Value, token: &str) -> Result<(u16, Value)> {
        self.post(
            &format!("/api/v1/rooms/{rid}/messages"),
            Some(token),
            body.clone(),
        )
        .await
    }

    /// `GET path` as `token`, the body's bytes (a file).
    pub async fn download(&self, path: &str, token: &str) -> Result<(u16, Vec<u8>)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.bytes().await?.to_vec()))
    }

    /// `POST /api/v1/users` then `POST /api/v1/sessions`.
    pub async fn register_and_login(&self, username: &str) -> Result<User> {
        let email = format!("{username}@bench.invalid");
        let (status, body) = self
            .post(
                "/api/v1/users",
                None,
                json!({"username": username, "email": email, "password": PASSWORD}),
            )
            .await?;
        if status != 201 {
            bail!("register {username}: HTTP {status} {body}");
        }
        let (status, body) = self
            .post(
                "/api/v1/sessions",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await?;
        if status != 201 {
            bail!("login {username}: HTTP {status} {body}");
        }
        let token = str_field(&body, "token")?;
        let id = body
            .get("user")
            .map(|u| str_field(u, "id"))
            .transpose()?
            .ok_or_else(|| anyhow!("login {username}: no user in {body}"))?;
        Ok(User {
            id,
            username: username.to_owned(),
            email,
            token,
        })
    }

    /// `POST /api/v1/chats {email}` as `user`: the direct room with `peer`.
    pub async fn open_direct(&self, user: &User, peer: &User) -> Result<String> {
        let (status, body) = self
            .post(
                "/api/v1/chats",
                Some(&user.token),
                json!({"email": peer.email}),
            )
            .await?;
        if status != 201 && status != 200 {
            bail!(
                "open chat {} -> {}: HTTP {status} {body}",
                user.username,
                peer.username
            );
        }
        str_field(&body, "room_id")
    }

    /// `POST /api/v1/groups {title, emails}` as `owner` (a Natter extension,
    /// docs/protocol.md): the new group's room id.
    pub async fn create_group(
        &self,
        owner: &User,
        title: &str,
        members: &[User],
    ) -> Result<String> {
        let emails: Vec<&str> = members.iter().map(|m| m.email.as_str()).collect();
        let (status, body) = self
            .post(
                "/api/v1/groups",
                Some(&owner.token),
                json!({"title": title, "emails": emails}),
            )
            .await?;
        if status != 201 {
            bail!("create group {title}: HTTP {status} {body} (groups are a Natter extension)");
        }
        str_field(&body, "room_id")
    }

    /// Registers and logs in `n` users named `{prefix}{tag}{i}`.
    pub async fn users(&self, prefix: &str, tag: &str, n: usize) -> Result<Vec<User>> {
        bounded(
            self.concurrency,
            (0..n).map(|i| {
                let name = format!("{prefix}{tag}{i}");
                async move { self.register_and_login(&name).await }
            }),
        )
        .await
    }

    /// Opens the direct room of each pair, returning the room ids in order.
    pub async fn rooms(&self, pairs: &[(User, User)]) -> Result<Vec<String>> {
        bounded(
            self.concurrency,
            pairs.iter().map(|(a, b)| self.open_direct(a, b)),
        )
        .await
    }
}

fn str_field(v: &Value, key: &str) -> Result<String> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        // Ids are strings in the contract; accept numbers from a lax server.
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(anyhow!("no string {key:?} in {v}")),
    }
}

/// Runs the futures at most `limit` at a time, keeping their order; fails on the first error.
pub async fn bounded<T, F>(limit: usize, futures: impl Iterator<Item = F>) -> Result<Vec<T>>
where
    F: Future<Output = Result<T>>,
{
    stream::iter(futures)
        .buffered(limit.max(1))
        .try_collect()
        .await
}

/// A random run prefix: usernames are unique per run (`b` + 8 hex digits + `_`).
pub fn run_prefix() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("random bytes");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("b{hex}_")
}
