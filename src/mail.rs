//! Mail over SMTP (lettre, on tokio, TLS by rustls): what the domain's
//! [`Mailer`] sends, password reset links.
//!
//! The server is named by a URL in lettre's form: `smtp://HOST:PORT` (plain,
//! for a relay on the machine or a test), `smtp://USER:PASS@HOST:587?tls=required`
//! (STARTTLS, refused without it), `smtps://USER:PASS@HOST:465` (TLS from
//! the first byte). Each mail opens its own connection: resets are rare.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use crate::domain::reset::{Mail, Mailer};

/// An SMTP server to send through, and who the mail is from.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Smtp {
    /// Reads the server's URL and the From address (`Natter <natter@example.org>`
    /// or a bare address). `hello` names this server in its greeting (EHLO)
    /// unless the URL's path does; `timeout` bounds each step of a
    /// conversation (connecting, each command). Nothing is sent yet.
    pub fn new(url: &str, from: &str, hello: &str, timeout: Duration) -> anyhow::Result<Self> {
        let from = from.parse::<Mailbox>().with_context(|| {
            format!("--smtp-from {from:?} is not an address like Natter <natter@example.org>")
        })?;
        // The URL may hold a password: it is never repeated in an error.
        let parsed = url::Url::parse(url).map_err(|_| {
            anyhow::anyhow!("--smtp-url is not a URL like smtp://user:pass@host:587?tls=required")
        })?;
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|_| {
            anyhow::anyhow!(
                "--smtp-url must be smtp://HOST:PORT, smtp://USER:PASS@HOST:PORT?tls=required \
                 or smtps://USER:PASS@HOST:PORT"
            )
        })?;
        let builder = match parsed.path().trim_matches('/') {
            "" => builder.hello_name(client_id(hello)),
            _ => builder,
        };
        Ok(Smtp {
            transport: builder.timeout(Some(timeout)).build(),
            from,
        })
    }
}

/// How EHLO names a host: an address as an address literal, else its name.
fn client_id(host: &str) -> ClientId {
    match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(IpAddr::V4(v4)) => ClientId::Ipv4(v4),
        Ok(IpAddr::V6(v6)) => ClientId::Ipv6(v6),
        Err(_) => ClientId::Domain(host.to_owned()),
    }
}

#[async_trait]
impl Mailer for Smtp {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let address = mail.to.parse::<Address>().context("not a mail address")?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(Some(mail.to_name.clone()), address))
            .subject(mail.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .context("the mail could not be written")?;
        self.transport
            .send(message)
            .await
            .context("the SMTP server did not take the mail")?;
        Ok(())
    }
}
