//! Group rooms: created with a title and members, renamed by any member,
//! members added and removed by the owner, left by anyone. Each change is
//! stored with the system message that records it.

use serde_json::Value;

use super::model::{Chat, RoomKind, RoomState, User, UserId};
use super::rules::{self, Whom};
use super::store::{GroupChange, StoreError};
use super::{Error, Natter, Result, now_ms, secrets};

/// A new group as a door read it (see [`super::Send`] for why the fields
/// are results).
#[derive(Debug)]
pub struct NewGroup {
    pub title: Result<String>,
    pub emails: Result<Vec<String>>,
}

impl NewGroup {
    /// `{title, emails?}` (Socket.IO `create-group`, `POST /groups`).
    pub fn from_json(payload: &Value) -> Self {
        NewGroup {
            title: rules::Payload(payload).title(),
            emails: rules::email_list(payload.get("emails")),
        }
    }
}

impl Natter {
    /// Creates a group owned by `me` with the users of `emails` (unknown ones
    /// refuse it all); returns it as `me` sees it.
    pub async fn create_group(&self, me: &User, group: NewGroup) -> Result<Chat> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let title = group.title?;
        let emails = group.emails?;
        self.budgets.lookups(me.id, emails.len())?;
        let mut members = Vec::new();
        for email in emails {
            let user = self.user_by_email(&email).await?;
            if user.id != me.id && !members.contains(&user.id) {
                members.push(user.id);
            }
        }
        for &member in &members {
            self.budgets.add(me.id, member)?;
        }
        let rid = secrets::new_room_id();
        let note = format!("{} created the group “{title}”", me.username);
        let change = GroupChange::Create {
            title: &title,
            members: &members,
        };
        self.store
            .change_group(&rid, me, change, &note, now_ms())
            .await?;
        self.tell_members(&rid).await?;
        self.chat(me, &rid).await
    }

    /// Renames a group; any member may.
    pub async fn rename_group(&self, me: &User, rid: &str, title: Result<String>) -> Result<Chat> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let title = title?;
        self.require_group(me, rid).await?;
        let note = format!("{} renamed the group to “{title}”", me.username);
        self.change_group(me, rid, GroupChange::Rename { title: &title }, &note, &[])
            .await?;
        self.chat(me, rid).await
    }

    /// Adds the user with `email` to a group; its owner only.
    pub async fn add_member(&self, me: &User, rid: &str, email: Result<String>) -> Result<Chat> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let room = self.require_group(me, rid).await?;
        if room.owner_id != Some(me.id) {
            return Err(Error::NotOwner);
        }
        let email = email?;
        self.budgets.lookups(me.id, 1)?;
        let user = self.user_by_email(&email).await?;
        self.budgets.add(me.id, user.id)?;
        let note = format!("{} added {}", me.username, user.username);
        let change = GroupChange::Add { user: user.id };
        self.change_group(me, rid, change, &note, &[]).await?;
        self.chat(me, rid).await
    }

    /// Takes a member out of a group: the owner may remove anyone, anyone may
    /// remove themselves (leave; `"me"` names the caller).
    pub async fn remove_member(&self, me: &User, rid: &str, whom: Result<Whom>) -> Result<()> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let room = self.require_group(me, rid).await?;
        let target = match whom? {
            Whom::Me => me.id,
            Whom::User(id) => id,
        };
        let note = if target == me.id {
            format!("{} left", me.username)
        } else {
            if room.owner_id != Some(me.id) {
                return Err(Error::NotOwner);
            }
            let member = self
                .store
                .members(rid)
                .await?
                .into_iter()
                .find(|m| m.id == target);
            let member = member.ok_or(Error::NoSuchUser)?;
            format!("{} removed {}", me.username, member.username)
        };
        self.change_group(
            me,
            rid,
            GroupChange::Remove { user: target },
            &note,
            &[target],
        )
        .await
    }

    /// A member's check for a group operation.
    async fn require_group(&self, me: &User, rid: &str) -> Result<RoomState> {
        let room = self.require_member(me, rid).await?;
        if room.kind != RoomKind::Group {
            return Err(Error::NotGroup);
        }
        Ok(room)
    }

    /// Stores a group change with its system message, then tells everyone
    /// concerned: the room the message, each member the room as it now is.
    ///
    /// The sockets of those who are `gone` leave the room (on every node)
    /// twice. BEFORE the removal commits: a message committed after the
    /// removal, on any node, is published after that leave, so it never
    /// reaches them. AFTER it commits: a socket that subscribed in between
    /// (a `join-chat` or a connect that read the membership before the commit)
    /// is taken out again. Every subscription re-checks membership after it is
    /// made, so one of the two always catches it: a re-check that still saw the
    /// member ran before the commit, hence before this second leave.
    pub(super) async fn change_group(
        &self,
        me: &User,
        rid: &str,
        change: GroupChange<'_>,
        note: &str,
        gone: &[UserId],
    ) -> Result<()> {
        for user in gone {
            self.notify.get().unsubscribe(*user, rid).await;
        }
        let stored = self
            .store
            .change_group(rid, me, change, note, now_ms())
            .await;
        let message = match (stored, change) {
            (Ok(message), _) => message,
            (Err(e), _) if !gone.is_empty() => {
                // Nobody left after all (a concurrent removal): members get the room back.
                self.tell_members(rid).await?;
                return Err(match e {
                    StoreError::Conflict => Error::NoSuchUser,
                    other => other.into(),
                });
            }
            (Err(StoreError::Conflict), GroupChange::Add { .. }) => {
                return Err(Error::AlreadyMember);
            }
            (Err(e), _) => return Err(e.into()),
        };
        for user in gone {
            self.notify.get().chat_removed(*user, rid).await;
        }
        self.notify.get().message_stored(&message, None).await;
        self.tell_members(rid).await
    }
}
