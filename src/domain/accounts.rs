//! A person's own account: the profile others see (display name, avatar,
//! whether strangers may find them), whom they block, their data as an
//! export, and the account's deletion.
//!
//! Blocking closes the direct room between two people both ways and keeps
//! the blocked person from adding the blocker to groups; in groups they
//! share, the blocker's clients hide the blocked person's messages (the list
//! is `GET /api/v1/blocks`). Sends check a direct room's blocks through a
//! cache of [`BLOCKS_CACHED_FOR`], so a block made on another node holds
//! there within that time.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::model::{
    Attachment, Chat, Invite, Message, Person, RoomKind, SessionInfo, User, UserId, avatar_url,
    timestamp_of_millis,
};
use super::throttle::Attempt;
use super::{Error, Natter, Result, Session, now_ms, rules};

/// How long a send trusts what it learnt of a direct room's blocks.
pub const BLOCKS_CACHED_FOR: Duration = Duration::from_secs(2);
/// People a search finds at most.
pub const PEOPLE_FOUND: i64 = 20;
/// The shortest query a search of people takes, in characters: shorter ones
/// would list the directory.
pub const MIN_PEOPLE_QUERY: usize = 2;
/// The longest query, in characters.
pub const MAX_PEOPLE_QUERY: usize = 64;
/// Messages an export holds at most (the newest rooms' first pages are not
/// favoured: rooms go in id order, each from its start).
pub const MAX_EXPORTED_MESSAGES: usize = 50_000;
/// Messages read from the store at once while exporting.
const EXPORT_PAGE: i64 = 1000;

/// What happens to the messages of a deleted account
/// (`--deleted-account-messages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletedMessages {
    /// They stay, their sender shown as "deleted user #id".
    #[default]
    Keep,
    /// They are deleted, as their sender's own deletion would.
    Remove,
}

/// Whom a group may take in without asking (`--group-adds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupAdds {
    /// Anyone not blocking the adder, but those who left the group: a
    /// re-add asks them first.
    #[default]
    Direct,
    /// As `Direct`, and someone who shares no room with the adder is asked
    /// too (an invitation they accept or decline).
    Consent,
}

/// The rules a server's operator chooses for accounts.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountRules {
    pub deleted_messages: DeletedMessages,
    pub group_adds: GroupAdds,
}

/// A change of profile as a door read it: each field is absent (unchanged)
/// or its new value.
#[derive(Debug)]
pub struct ProfileChange {
    pub display_name: Result<Option<Option<String>>>,
    pub in_directory: Result<Option<bool>>,
}

impl ProfileChange {
    /// `{display_name?: string|null, in_directory?: bool}` (`PATCH /me`).
    pub fn from_json(payload: &Value) -> Self {
        ProfileChange {
            display_name: payload
                .get("display_name")
                .map(rules::display_name)
                .transpose(),
            in_directory: match payload.get("in_directory") {
                None => Ok(None),
                Some(Value::Bool(on)) => Ok(Some(*on)),
                Some(_) => Err(Error::invalid("in_directory must be true or false")),
            },
        }
    }
}

/// My account as I see it (`GET /me`).
#[derive(Debug, Clone, Serialize)]
pub struct MyAccount {
    #[serde(flatten)]
    pub user: User,
    pub display_name: Option<String>,
    pub avatar: Option<String>,
    pub in_directory: bool,
    pub admin: bool,
}

/// A file of mine, as an export lists it: fetch its `url` (the attachment's
/// own) with the same credentials.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedFile {
    pub room_id: String,
    pub seq: i64,
    #[serde(flatten)]
    pub attachment: Attachment,
}

/// Everything the server holds of mine (`GET /me/export`).
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub exported_at: f64,
    pub account: MyAccount,
    pub sessions: Vec<SessionInfo>,
    pub chats: Vec<Chat>,
    /// The text messages I sent in the rooms I am in, room by room in seq order.
    pub messages: Vec<Message>,
    /// Whether [`MAX_EXPORTED_MESSAGES`] cut the messages short.
    pub messages_truncated: bool,
    /// The files of those messages.
    pub files: Vec<ExportedFile>,
    pub blocked: Vec<Person>,
    pub invites: Vec<Invite>,
}

impl Natter {
    /// Sets the operator's rules for accounts.
    pub fn with_account_rules(mut self, rules: AccountRules) -> Self {
        self.account_rules = rules;
        self
    }

    /// What the operator chose for accounts.
    pub fn account_rules(&self) -> AccountRules {
        self.account_rules
    }

    /// My account with its profile.
    pub async fn my_account(&self, me: &User) -> Result<MyAccount> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        let profile = self.store.profile(me.id).await?;
        Ok(MyAccount {
            user: me.clone(),
            display_name: profile.display_name,
            avatar: avatar_url(me.id, profile.avatar_key.as_deref()),
            in_directory: profile.in_directory,
            admin: self.store.is_admin(me.id).await?,
        })
    }

    /// Changes my display name or my place in the directory; the rooms I
    /// am in show it at once.
    pub async fn change_profile(&self, me: &User, change: ProfileChange) -> Result<MyAccount> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let name = change
            .display_name
            .map_err(|e| e.in_field("display_name"))?;
        let listed = change
            .in_directory
            .map_err(|e| e.in_field("in_directory"))?;
        let profile = self.store.profile(me.id).await?;
        let display_name = name.unwrap_or(profile.display_name.clone());
        let in_directory = listed.unwrap_or(profile.in_directory);
        self.store
            .set_profile(me.id, display_name.as_deref(), in_directory)
            .await?;
        if display_name != profile.display_name {
            self.tell_my_rooms(me).await?;
        }
        self.my_account(me).await
    }

    /// Every member of each of my rooms gets the room anew (a name or an
    /// avatar changed).
    pub(super) async fn tell_my_rooms(&self, me: &User) -> Result<()> {
        for rid in self.store.room_ids(me.id).await? {
            self.tell_members(&rid).await?;
        }
        Ok(())
    }

    /// People whose username or display name starts with `query`: those I
    /// share a room with, and those in the directory; never those who
    /// blocked me. Costs a lookup of the per-user budget.
    pub async fn find_people(&self, me: &User, query: Result<String>) -> Result<Vec<Person>> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        self.budgets.lookups(me.id, 1)?;
        let query = query?.trim().to_lowercase();
        let chars = query.chars().count();
        if !(MIN_PEOPLE_QUERY..=MAX_PEOPLE_QUERY).contains(&chars) {
            return Err(Error::invalid(format!(
                "q must be {MIN_PEOPLE_QUERY} to {MAX_PEOPLE_QUERY} characters"
            )));
        }
        Ok(self.store.find_people(me.id, &query, PEOPLE_FOUND).await?)
    }

    /// Blocks someone: see the module's documentation for what it does.
    pub async fn block(&self, me: &User, whom: Result<UserId>) -> Result<()> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let whom = whom?;
        if whom == me.id {
            return Err(Error::SelfChat);
        }
        self.store
            .user_by_id(whom)
            .await?
            .ok_or(Error::NoSuchUser)?;
        self.store.block(me.id, whom, now_ms()).await?;
        // This node knows at once; the others within BLOCKS_CACHED_FOR.
        self.blocked_rooms.invalidate_all();
        Ok(())
    }

    /// Lifts a block of mine.
    pub async fn unblock(&self, me: &User, whom: Result<UserId>) -> Result<()> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        if !self.store.unblock(me.id, whom?).await? {
            return Err(Error::NoSuchUser);
        }
        self.blocked_rooms.invalidate_all();
        Ok(())
    }

    /// Whom I block, most recent first.
    pub async fn blocked(&self, me: &User) -> Result<Vec<Person>> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        Ok(self.store.blocked_by(me.id).await?)
    }

    /// Whether one of the two people of direct room `rid` blocks the other
    /// (cached for [`BLOCKS_CACHED_FOR`]: it is asked on every send).
    pub(super) async fn direct_room_blocked(&self, rid: &str) -> Result<bool> {
        if let Some(blocked) = self.blocked_rooms.get(rid) {
            return Ok(blocked);
        }
        let blocked = self.store.direct_room_blocked(rid).await?;
        self.blocked_rooms.insert(rid.to_owned(), blocked);
        Ok(blocked)
    }

    /// Everything the server holds of mine, as JSON (files by their URLs).
    pub async fn export(&self, session: &Session) -> Result<Export> {
        let me = &session.user;
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let _turn = self.budgets.page(me.id).await?;
        let chats = self.store.chats(me.id).await?;
        let mut messages = Vec::new();
        let mut truncated = false;
        'rooms: for chat in &chats {
            let mut after = 0;
            loop {
                let page = self
                    .store
                    .messages_by(me.id, &chat.room_id, after, EXPORT_PAGE)
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                let full = page.len() as i64 == EXPORT_PAGE;
                for message in page {
                    if messages.len() == MAX_EXPORTED_MESSAGES {
                        truncated = true;
                        break 'rooms;
                    }
                    messages.push(message);
                }
                if !full {
                    break;
                }
            }
        }
        let files = messages
            .iter()
            .flat_map(|m| {
                m.attachments.iter().map(|a| ExportedFile {
                    room_id: m.rid.clone(),
                    seq: m.seq,
                    attachment: a.clone(),
                })
            })
            .collect();
        Ok(Export {
            exported_at: timestamp_of_millis(now_ms()),
            account: self.my_account(me).await?,
            sessions: self.sessions(session).await?,
            chats,
            messages,
            messages_truncated: truncated,
            files,
            blocked: self.store.blocked_by(me.id).await?,
            invites: self.store.invites(Some(me.id)).await?,
        })
    }

    /// Deletes my account, after my password (checked like a login). I
    /// leave my groups; my direct rooms stay with the other person, my name
    /// shown as "deleted user #id"; my messages stay or go as the operator
    /// chose ([`DeletedMessages`]); every session of mine ends, and with
    /// them my sockets on every node.
    pub async fn delete_account(
        &self,
        session: &Session,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<()> {
        let me = &session.user;
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.throttle.check(Attempt::Login, &me.email, client)?;
        let (_, hash) = self
            .store
            .credentials(&me.email)
            .await?
            .ok_or(Error::Unauthorized)?;
        if !self.hasher.verify(password.to_owned(), hash).await? {
            self.throttle.failed(&me.email, client);
            return Err(Error::invalid("the password is wrong").in_field("password"));
        }
        self.throttle.succeeded(&me.email, client);
        let rooms = self.store.chats(me.id).await?;
        for chat in rooms.iter().filter(|c| c.kind == RoomKind::Group) {
            let note = format!("{} deleted their account", me.username);
            let change = super::store::GroupChange::Remove { user: me.id };
            match self
                .change_group(me, &chat.room_id, change, &note, &[me.id])
                .await
            {
                // Gone meanwhile (removed by its owner): nothing to leave.
                Ok(()) | Err(Error::NoSuchUser) => {}
                Err(e) => return Err(e),
            }
        }
        let remove = self.account_rules.deleted_messages == DeletedMessages::Remove;
        let Some(avatar) = self.store.delete_account(me.id, remove, now_ms()).await? else {
            return Err(Error::Unauthorized);
        };
        if remove || avatar.is_some() {
            self.files_released();
        }
        for chat in rooms.iter().filter(|c| c.kind == RoomKind::Direct) {
            self.tell_members(&chat.room_id).await?;
        }
        Ok(())
    }
}
