//! Web Push over HTTP (RFC 8030): the server's VAPID key pair (RFC 8292),
//! the payload's encryption (RFC 8291, `aes128gcm`, by web-push-native) and
//! the POST to each subscription's push service (reqwest). What to push to
//! whom is the domain's business (`domain::push`).
//!
//! The VAPID key is derived from the server secret — the one the cookie key
//! comes from — with HKDF-SHA256 under its own label, so every node of a
//! cluster (which shares that secret through the database) signs with the
//! same key, and nothing more is stored. Rotating the secret changes the
//! key: browsers subscribed with the old one, push services refuse pushes
//! signed with another, and every subscription must be made again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use sha2::Sha256;
use web_push_native::{Auth, WebPushBuilder};

use crate::domain::push::{PushService, Sent};
use crate::domain::rules;
use crate::domain::store::PushEndpoint;

/// HKDF's `info`: what the secret is stretched into here, so that its other
/// uses (the cookie key) never meet this one.
const VAPID_INFO: &[u8] = b"natter vapid key v1";
/// How long a push service keeps a push for a browser that is offline
/// (RFC 8030 `TTL`): a day-old message is still news.
const TTL: Duration = Duration::from_secs(86_400);
/// How long a VAPID signature is good for: RFC 8292 allows 24 hours at most;
/// half of that leaves room for clocks that differ.
const VAPID_VALIDITY: Duration = Duration::from_secs(12 * 3600);
/// How long connecting to a push service may take (the whole push has
/// `domain::push::SEND_TIMEOUT`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The server's VAPID key pair.
pub struct VapidKey {
    signing: SigningKey,
    /// The public key as browsers take it: the uncompressed point, base64url.
    public: String,
}

impl VapidKey {
    /// The key pair of `secret`: HKDF-SHA256 (no salt, info
    /// `natter vapid key v1`) stretched to 32 bytes, read as a P-256 scalar.
    pub fn derive(secret: &[u8]) -> anyhow::Result<Self> {
        let hkdf = Hkdf::<Sha256>::new(None, secret);
        // 32 bytes are a valid scalar unless they are 0 or past the group's
        // order (odds of about 2^-32): then the label with a counter, in turn.
        for counter in 0..=u8::MAX {
            let mut info = VAPID_INFO.to_vec();
            if counter > 0 {
                info.push(counter);
            }
            let mut scalar = [0u8; 32];
            hkdf.expand(&info, &mut scalar)
                .map_err(|_| anyhow::anyhow!("HKDF cannot give 32 bytes"))?;
            if let Ok(signing) = SigningKey::from_slice(&scalar) {
                let point = signing.verifying_key().to_encoded_point(false);
                return Ok(VapidKey {
                    public: URL_SAFE_NO_PAD.encode(point.as_bytes()),
                    signing,
                });
            }
        }
        bail!("no P-256 key derives from this secret")
    }

    /// The `Authorization` header of a push to `endpoint`: `vapid t=JWT, k=KEY`.
    ///
    /// Signed here rather than by web-push-native, whose token names the
    /// endpoint's scheme and host without its port (RFC 8292 §2 wants the
    /// origin) and lasts as long as the push's TTL (a day, the RFC's limit).
    fn authorization(&self, endpoint: &url::Url, contact: &str) -> anyhow::Result<HeaderValue> {
        let expires = SystemTime::now() + VAPID_VALIDITY;
        let claims = serde_json::json!({
            "aud": endpoint.origin().ascii_serialization(),
            "exp": expires.duration_since(UNIX_EPOCH)?.as_secs(),
            "sub": contact,
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.signing.sign(signed.as_bytes());
        let header = format!(
            "vapid t={signed}.{}, k={}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes()),
            self.public
        );
        Ok(HeaderValue::try_from(header)?)
    }
}

/// Pushes through reqwest.
pub struct WebPush {
    key: VapidKey,
    /// The VAPID `sub`: whom a push service may write to about our pushes.
    contact: String,
    client: reqwest::Client,
}

impl WebPush {
    /// `allow_http` (`--push-allow-http`, tests only) also lets pushes go
    /// over plain http and to local or private addresses.
    pub fn new(key: VapidKey, contact: String, allow_http: bool) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder()
            // A push service that redirected could send us anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT);
        if !allow_http {
            client = client.https_only(true).dns_resolver(Arc::new(PublicOnly));
        }
        Ok(WebPush {
            key,
            contact,
            client: client.build().context("cannot set up the push client")?,
        })
    }

    /// Encrypts `payload` for `to` and posts it; the push service's answer.
    async fn post(&self, to: &PushEndpoint, payload: &[u8]) -> anyhow::Result<reqwest::StatusCode> {
        let endpoint = url::Url::parse(&to.url)?;
        let browser_key = rules::push_key_bytes(&to.p256dh)
            .and_then(|bytes| p256::PublicKey::from_sec1_bytes(&bytes).ok())
            .context("the subscription's p256dh is not a P-256 key")?;
        let auth: [u8; 16] = rules::push_key_bytes(&to.auth)
            .and_then(|bytes| bytes.try_into().ok())
            .context("the subscription's auth is not 16 bytes")?;
        let mut request = WebPushBuilder::new(to.url.parse()?, browser_key, Auth::from(auth))
            .with_valid_duration(TTL)
            .build(payload)?;
        let headers = request.headers_mut();
        headers.insert(
            AUTHORIZATION,
            self.key.authorization(&endpoint, &self.contact)?,
        );
        // A message from a person is worth waking a phone for (RFC 8030 §5.3).
        headers.insert("urgency", HeaderValue::from_static("high"));
        let response = self.client.execute(request.try_into()?).await?;
        Ok(response.status())
    }
}

#[async_trait]
impl PushService for WebPush {
    fn public_key(&self) -> &str {
        &self.key.public
    }

    async fn send(&self, to: &PushEndpoint, payload: &[u8]) -> Sent {
        match self.post(to, payload).await {
            Ok(status) if status.is_success() => Sent::Delivered,
            Ok(status) if matches!(status.as_u16(), 404 | 410) => Sent::Gone,
            Ok(status) => Sent::Failed(format!("the push service answered {status}")),
            Err(e) => Sent::Failed(format!("{e:#}")),
        }
    }
}

/// Resolves a push service's (or a webhook's) name to its public
/// addresses only. The subscription rule refuses local and private
/// addresses written as such; a name can point there too (DNS says what its
/// owner likes), so what it resolves to is checked here, at every connection.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| rules::is_public_ip(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{} has no public address", name.as_str()).into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_secret() {
        let key = VapidKey::derive(&[1u8; 64]).unwrap();
        assert_eq!(key.public, VapidKey::derive(&[1u8; 64]).unwrap().public);
        assert_ne!(key.public, VapidKey::derive(&[2u8; 64]).unwrap().public);
        let point = URL_SAFE_NO_PAD.decode(&key.public).unwrap();
        assert_eq!((point.len(), point[0]), (65, 4), "uncompressed");
    }

    #[test]
    fn the_signature_names_the_endpoints_origin_with_its_port() {
        let key = VapidKey::derive(&[1u8; 64]).unwrap();
        let endpoint = url::Url::parse("http://127.0.0.1:8443/push/1?x=y").unwrap();
        let header = key
            .authorization(&endpoint, "mailto:ops@example.com")
            .unwrap();
        let header = header.to_str().unwrap();
        let (token, k) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .unwrap();
        assert_eq!(k, key.public);
        let claims = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["aud"], "http://127.0.0.1:8443");
        assert_eq!(claims["sub"], "mailto:ops@example.com");
    }
}
