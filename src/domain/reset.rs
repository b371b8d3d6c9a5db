//! Password reset by email: "forgot your password?" for servers that can
//! send mail (`--smtp-url`); off, and refused with
//! [`Error::ResetUnavailable`], on those that cannot.
//!
//! A request names an email. Whatever it names, it is answered the same way
//! at once: the request path only checks the email's shape and the
//! throttle (per client address and per email, see [`super::throttle`]),
//! then hands the email to a bounded queue ([`QUEUE_CAPACITY`]). So neither
//! the answer nor its timing tells whether an account exists, and a slow or
//! dead SMTP server holds no request. One task per node drains the queue:
//! for an account that exists and is not disabled, holding fewer than
//! [`MAX_LIVE_LINKS`] live links, it makes a link — a random 256-bit token,
//! only whose SHA-256 is stored — and mails `<public url>/reset/<token>`,
//! [`CONCURRENT_MAILS`] at a time, each within the SMTP deadline. A failed
//! mail is logged, not retried (the person asks again); its link still
//! counts until it expires.
//!
//! A link works once, until its lifetime ends (`--password-reset-lifetime`,
//! default [`DEFAULT_LIFETIME`]). Using it sets the new password (the
//! registration rule), ends every session of the account (their sockets
//! close on every node within a tick of the session watch) and every other
//! link of the account. The link is checked before the new password is
//! hashed, so unknown tokens cost a lookup, never a hash.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::model::User;
use super::throttle::Attempt;
use super::{Error, Natter, Result, now_ms, rules, secrets};
use crate::tasks::Task;

/// Requests that may wait for their mail, per node; past it a request is
/// dropped (and logged), answered like the others.
pub const QUEUE_CAPACITY: usize = 256;
/// Mails being sent at once, per node.
pub const CONCURRENT_MAILS: usize = 4;
/// Live links an account holds at most: past it a request mails nothing
/// (so one inbox gets at most this many mails per link lifetime).
pub const MAX_LIVE_LINKS: i64 = 3;
/// How long a link works, unless `--password-reset-lifetime` says otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// One mail to one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The address.
    pub to: String,
    /// The person's name, shown beside the address.
    pub to_name: String,
    pub subject: String,
    /// Plain text.
    pub body: String,
}

/// Sends mail (`src/mail.rs` implements it over SMTP).
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends `mail`, or says why it could not.
    async fn send(&self, mail: &Mail) -> anyhow::Result<()>;
}

/// How reset links are made and mailed.
#[derive(Debug, Clone)]
pub struct ResetSettings {
    /// Where people reach this server (`--public-url`), without a trailing
    /// slash: the link is `<public_url>/reset/<token>`.
    pub public_url: String,
    /// How long a link works.
    pub lifetime: Duration,
    /// How long one mail may take to send, connecting included.
    pub send_deadline: Duration,
}

/// The request side of a started reset service.
pub(super) struct Resets {
    queue: mpsc::Sender<String>,
    lifetime: Duration,
}

impl Natter {
    /// Starts this node's reset mail task (see the module): from now on
    /// password resets are on. Once per node: a second call is ignored.
    pub fn start_password_resets(
        self: &Arc<Self>,
        settings: ResetSettings,
        mailer: Arc<dyn Mailer>,
    ) -> Task {
        let (queue, waiting) = mpsc::channel(QUEUE_CAPACITY);
        let _ = self.resets.set(Resets {
            queue,
            lifetime: settings.lifetime,
        });
        let natter = self.clone();
        Task::spawn("password reset mail", move |shutdown| async move {
            let requests = futures_util::stream::unfold(waiting, |mut waiting| async move {
                waiting.recv().await.map(|email| (email, waiting))
            });
            let mails = requests.for_each_concurrent(CONCURRENT_MAILS, |email| {
                natter.mail_reset_link(email, &settings, mailer.as_ref())
            });
            // Mails under way are dropped at shutdown: a hung SMTP server
            // must not hold it up, and the person can ask again.
            tokio::select! {
                () = shutdown.recv() => {}
                () = mails => {}
            }
        })
    }

    /// Whether this server mails reset links (the login page offers one).
    pub fn password_resets_enabled(&self) -> bool {
        self.resets.get().is_some()
    }

    /// How long a reset link works, when resets are on (pages say it).
    pub fn password_reset_lifetime(&self) -> Option<Duration> {
        self.resets.get().map(|resets| resets.lifetime)
    }

    /// Asks for a reset link for `email`: answered `Ok` whether or not an
    /// account has it (the mail goes out later, or not at all). Refused only
    /// when resets are off, the email is malformed, or a throttle of
    /// `client`'s address or of the email is spent.
    pub fn request_password_reset(&self, email: &str, client: Option<IpAddr>) -> Result<()> {
        let resets = self.resets.get().ok_or(Error::ResetUnavailable)?;
        self.throttle.check(Attempt::Reset, email, client)?;
        let email = rules::email(email).map_err(|e| e.in_field("email"))?;
        match resets.queue.try_send(email) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tracing::warn!(
                capacity = QUEUE_CAPACITY,
                "the password reset queue is full: a request is dropped"
            ),
            // The node is stopping.
            Err(TrySendError::Closed(_)) => {}
        }
        Ok(())
    }

    /// Whether the reset link of `token` can be used now (its page asks).
    pub async fn check_reset_link(&self, token: &str) -> Result<()> {
        self.resets.get().ok_or(Error::ResetUnavailable)?;
        let hash = secrets::token_hash(token);
        match self.store.password_reset(&hash, now_ms()).await? {
            Some(_) => Ok(()),
            None => Err(Error::BadResetLink),
        }
    }

    /// Uses the reset link of `token`: sets `password` (the registration
    /// rule; field `password`) and ends every session of the account.
    pub async fn complete_password_reset(&self, token: &str, password: String) -> Result<User> {
        self.check_reset_link(token).await?;
        rules::password(&password).map_err(|e| e.in_field("password"))?;
        let hash = self.hasher.hash(password).await?;
        let token_hash = secrets::token_hash(token);
        self.store
            .use_password_reset(&token_hash, &hash, now_ms())
            .await?
            .ok_or(Error::BadResetLink)
    }

    /// Makes a link for the account with `email`, if it may have one, and
    /// mails it within the deadline. Failures are logged: nobody waits.
    async fn mail_reset_link(&self, email: String, settings: &ResetSettings, mailer: &dyn Mailer) {
        let made = async {
            let Some(user) = self.store.user_by_email(&email).await? else {
                return Ok(None);
            };
            let token = secrets::new_token();
            let now = now_ms();
            let expires_at = now.saturating_add(settings.lifetime.as_millis() as i64);
            let hash = secrets::token_hash(&token);
            let stored = self
                .store
                .create_password_reset(&hash, user.id, now, expires_at, MAX_LIVE_LINKS)
                .await?;
            Ok::<_, super::store::StoreError>(stored.then_some((user, token)))
        };
        let (user, token) = match made.await {
            Ok(Some(made)) => made,
            // No such account, a disabled one, or one with enough live links.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "no reset link made");
                return;
            }
        };
        let mail = reset_mail(&user, &token, settings);
        match tokio::time::timeout(settings.send_deadline, mailer.send(&mail)).await {
            Ok(Ok(())) => tracing::info!(user_id = user.id, "reset link mailed"),
            // Never the address nor the link: the log is no place for either.
            Ok(Err(e)) => tracing::warn!(user_id = user.id, error = %e, "reset mail failed"),
            Err(_) => tracing::warn!(
                user_id = user.id,
                deadline = ?settings.send_deadline,
                "reset mail not sent within its deadline"
            ),
        }
    }
}

/// The mail that carries a reset link.
fn reset_mail(user: &User, token: &str, settings: &ResetSettings) -> Mail {
    let link = format!("{}/reset/{token}", settings.public_url);
    let lifetime = spoken(settings.lifetime);
    Mail {
        to: user.email.clone(),
        to_name: user.username.clone(),
        subject: "Set a new Natter password".to_owned(),
        body: format!(
            "Hello {name},\n\n\
             Someone, hopefully you, asked to set a new password for the\n\
             Natter account of {email}. Open this link to choose one:\n\n\
             {link}\n\n\
             It works once, for {lifetime}. Setting a new password signs\n\
             you out on every device.\n\n\
             If you did not ask, ignore this mail: your password stays as it is.\n",
            name = user.username,
            email = user.email,
        ),
    }
}

/// A lifetime as a person says it: "30 minutes", "1 hour", "90 seconds".
pub fn spoken(lifetime: Duration) -> String {
    let secs = lifetime.as_secs();
    let (n, unit) = match secs {
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    match n {
        1 => format!("1 {unit}"),
        n => format!("{n} {unit}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_spoken_in_their_largest_whole_unit() {
        let said = |secs| spoken(Duration::from_secs(secs));
        assert_eq!(said(1800), "30 minutes");
        assert_eq!(said(3600), "1 hour");
        assert_eq!(said(7200), "2 hours");
        assert_eq!(said(60), "1 minute");
        assert_eq!(said(90), "90 seconds");
        assert_eq!(said(1), "1 second");
    }
}
