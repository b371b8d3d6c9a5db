//! Outgoing webhooks over HTTP: the POST of each attempt (reqwest). What to
//! deliver, how it is signed and when it is tried again is the domain's
//! business (`domain::webhooks`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;

use crate::domain::webhooks::{Post, WebhookPoster};
use crate::webpush::PublicOnly;

/// How long connecting to a receiver may take (the whole request has
/// `--webhook-timeout-secs`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Posts deliveries through reqwest.
pub struct HttpPoster {
    client: reqwest::Client,
}

impl HttpPoster {
    /// `allow_private` (`--webhook-allow-private`) lets requests reach
    /// loopback and private addresses; otherwise a receiver's name must
    /// resolve to public addresses, checked at every connection.
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder()
            // A receiver that redirected could send us anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("natter-webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            client = client.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(HttpPoster {
            client: client.build().context("cannot set up the webhook client")?,
        })
    }
}

#[async_trait]
impl WebhookPoster for HttpPoster {
    async fn post(&self, post: &Post) -> Result<u16, String> {
        let mut request = self.client.post(&post.url).body(post.body.clone());
        for (name, value) in &post.headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) => Err(format!("{:#}", anyhow::Error::new(e.without_url()))),
        }
    }
}
