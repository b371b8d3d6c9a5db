//! What only admins do: list and search accounts, disable and enable them,
//! set a password, read the server's health and counts, choose the
//! registration mode, and delete any message for everyone (moderation).
//!
//! Each operation checks the role itself, so every door (the JSON API, the
//! admin page) refuses a member the same way.

use serde::Serialize;
use serde_json::Value;

use super::invites::{RegistrationMode, WhoMayJoin};
use super::model::{Account, Message, ServerCounts, User, UserId};
use super::{Error, Natter, Result, now_ms, rules};

/// Accounts a page of the admin's list holds at most, and by default.
pub const MAX_ACCOUNTS_PAGE: i64 = 200;
pub const DEFAULT_ACCOUNTS_PAGE: i64 = 50;
/// The longest search of accounts, in characters.
pub const MAX_ACCOUNT_QUERY: usize = 254;

/// The settings key of an admin's choice of who may join (overriding the
/// flags until cleared).
const WHO_MAY_JOIN_KEY: &str = "who_may_join";

/// A page of accounts, in id order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccountPage {
    pub users: Vec<Account>,
    pub has_more: bool,
    /// What `after` takes for the next page; `None` on the last.
    #[schema(required = true)]
    pub next_after: Option<String>,
}

/// The server as an admin sees it (`GET /admin/stats`).
#[derive(Debug, Clone, Serialize)]
pub struct ServerStats {
    pub version: &'static str,
    /// Whether the database answers.
    pub database: bool,
    pub counts: ServerCounts,
    /// Sockets open on the node that answered.
    pub sockets_on_this_node: usize,
    /// Who may join now (`registration`, `members_may_invite`).
    #[serde(flatten)]
    pub who_may_join: WhoMayJoin,
}

/// An admin's change to an account, as a door read it.
#[derive(Debug)]
pub struct AccountChange {
    pub disabled: Result<Option<bool>>,
    pub password: Result<Option<String>>,
}

impl AccountChange {
    /// `{disabled?: bool, password?: string}` (`PATCH /admin/users/{id}`).
    pub fn from_json(payload: &Value) -> Self {
        AccountChange {
            disabled: match payload.get("disabled") {
                None => Ok(None),
                Some(Value::Bool(on)) => Ok(Some(*on)),
                Some(_) => Err(Error::invalid("disabled must be true or false")),
            },
            password: match payload.get("password") {
                None => Ok(None),
                Some(Value::String(p)) => Ok(Some(p.clone())),
                Some(_) => Err(Error::invalid("password must be a string")),
            },
        }
    }
}

/// An admin's choice of who may join, as a door read it: `registration`
/// (`open`, `invite`, `closed`, or `null` to go back to the flags) and
/// `members_may_invite`.
#[derive(Debug)]
pub struct JoinSettings {
    pub registration: Result<Option<Option<RegistrationMode>>>,
    pub members_may_invite: Result<Option<bool>>,
}

impl JoinSettings {
    pub fn from_json(payload: &Value) -> Self {
        JoinSettings {
            registration: match payload.get("registration") {
                None => Ok(None),
                Some(Value::Null) => Ok(Some(None)),
                Some(Value::String(mode)) => RegistrationMode::parse(mode).map(|m| Some(Some(m))),
                Some(_) => Err(Error::invalid(
                    "registration must be \"open\", \"invite\", \"closed\" or null",
                )),
            },
            members_may_invite: match payload.get("members_may_invite") {
                None => Ok(None),
                Some(Value::Bool(on)) => Ok(Some(*on)),
                Some(_) => Err(Error::invalid("members_may_invite must be true or false")),
            },
        }
    }
}

impl Natter {
    /// The admin check of every operation here.
    async fn require_admin(&self, me: &User) -> Result<()> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        match self.store.is_admin(me.id).await? {
            true => Ok(()),
            false => Err(Error::NotAdmin),
        }
    }

    /// Whether `me` is an admin (pages show the admin link).
    pub async fn is_admin(&self, me: &User) -> Result<bool> {
        Ok(self.store.is_admin(me.id).await?)
    }

    /// A page of accounts (deleted ones too, marked), with `query`: those
    /// whose username, display name or email starts with it.
    pub async fn accounts(
        &self,
        me: &User,
        query: Option<String>,
        after: Result<Option<UserId>>,
        limit: Result<Option<i64>>,
    ) -> Result<AccountPage> {
        self.require_admin(me).await?;
        let query = query.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
        if query
            .as_ref()
            .is_some_and(|q| q.chars().count() > MAX_ACCOUNT_QUERY)
        {
            return Err(Error::invalid(format!(
                "q must be at most {MAX_ACCOUNT_QUERY} characters"
            )));
        }
        let limit = match limit? {
            None => DEFAULT_ACCOUNTS_PAGE,
            Some(n) if (1..=MAX_ACCOUNTS_PAGE).contains(&n) => n,
            Some(_) => {
                return Err(Error::invalid(format!(
                    "limit must be 1 to {MAX_ACCOUNTS_PAGE}"
                )));
            }
        };
        let mut users = self
            .store
            .accounts(query.as_deref(), after?.unwrap_or(0), limit + 1)
            .await?;
        let has_more = users.len() as i64 > limit;
        users.truncate(limit as usize);
        let next_after = users.last().filter(|_| has_more).map(|u| u.id.to_string());
        Ok(AccountPage {
            users,
            has_more,
            next_after,
        })
    }

    /// Disables or enables an account, or sets its password. Disabling (and
    /// a new password) ends every session of the account, and so its sockets
    /// on every node within a tick of their session watch. An admin cannot
    /// disable themselves (the server would be left without one).
    pub async fn change_account(
        &self,
        me: &User,
        id: Result<UserId>,
        change: AccountChange,
    ) -> Result<Account> {
        self.require_admin(me).await?;
        let id = id?;
        let disabled = change.disabled?;
        let password = change.password?;
        let user = self.store.user_by_id(id).await?.ok_or(Error::NoSuchUser)?;
        if let Some(password) = password {
            rules::password(&password).map_err(|e| e.in_field("password"))?;
            let hash = self.hasher.hash(password).await?;
            self.store.set_password(user.id, &hash, None).await?;
        }
        match disabled {
            Some(true) if user.id == me.id => {
                return Err(Error::invalid("an admin cannot disable their own account"));
            }
            Some(true) => self.store.disable_user(user.id, now_ms()).await?,
            Some(false) => self.store.enable_user(user.id).await?,
            None => {}
        }
        let found = self
            .store
            .accounts(None, user.id - 1, 1)
            .await?
            .into_iter()
            .next();
        found.ok_or(Error::NoSuchUser)
    }

    /// The server's health and counts.
    pub async fn server_stats(&self, me: &User) -> Result<ServerStats> {
        self.require_admin(me).await?;
        Ok(ServerStats {
            version: env!("CARGO_PKG_VERSION"),
            database: self.store.ping().await.is_ok(),
            counts: self.store.counts().await?,
            sockets_on_this_node: self.connections.open(),
            who_may_join: self.who_may_join().await?,
        })
    }

    /// Who may join now: an admin's choice, stored for every node, else the flags.
    pub async fn who_may_join(&self) -> Result<WhoMayJoin> {
        let stored = self.store.setting(WHO_MAY_JOIN_KEY).await?;
        Ok(stored
            .and_then(|bytes| WhoMayJoin::decode(&bytes))
            .unwrap_or(self.who_may_join))
    }

    /// Changes who may join, on every node at once (registration reads it).
    pub async fn set_who_may_join(&self, me: &User, change: JoinSettings) -> Result<WhoMayJoin> {
        self.require_admin(me).await?;
        let registration = change.registration?;
        let members_may_invite = change.members_may_invite?;
        let current = self.who_may_join().await?;
        let wanted = WhoMayJoin {
            mode: match registration {
                None => current.mode,
                Some(None) => self.who_may_join.mode,
                Some(Some(mode)) => mode,
            },
            members_may_invite: members_may_invite.unwrap_or(current.members_may_invite),
        };
        let stored = match wanted == self.who_may_join {
            // Back to what the flags say: nothing overrides them.
            true => None,
            false => Some(wanted.encode()),
        };
        self.store
            .set_setting(WHO_MAY_JOIN_KEY, stored.as_deref())
            .await?;
        Ok(wanted)
    }

    /// Deletes message `seq` of room `rid` for everyone, whoever sent it,
    /// and records it in the room as a system message ("a moderator deleted
    /// a message of ann"). Admins need not be members.
    pub async fn moderate(&self, me: &User, rid: &str, seq: Result<i64>) -> Result<Message> {
        self.require_admin(me).await?;
        let seq = seq?;
        let original = self
            .store
            .message(rid, seq)
            .await?
            .ok_or(Error::NoSuchMessage)?;
        let note = format!(
            "a moderator deleted a message of {}",
            original.sender_username
        );
        let Some((deleted, record)) = self
            .store
            .moderate_message(rid, seq, me, &note, now_ms())
            .await?
        else {
            return Err(match original.deleted {
                true => Error::Deleted,
                false => Error::NoSuchMessage,
            });
        };
        if !original.attachments.is_empty() {
            self.files_released();
        }
        let notifier = self.notify.get();
        notifier.message_updated(&deleted, None).await;
        notifier.message_stored(&record, None).await;
        self.tell_members(rid).await?;
        Ok(record)
    }
}
