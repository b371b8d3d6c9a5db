//! Group rooms: created with a title and members, renamed by any member,
//! members added and removed by the owner, left by anyone. Each change is
//! stored with the system message that records it.
//!
//! Who may add whom: nobody adds a person who blocks them or whom they block.
//! A person who left a group is asked before they are back (an invitation
//! they accept or decline), and so is, with `--group-adds consent`, anyone
//! who shares no room with the adder. A declined invitation is remembered
//! for [`DECLINE_REMEMBERED`]: the group cannot ask again meanwhile.

use serde_json::Value;

use std::time::Duration;

use super::accounts::GroupAdds;
use super::model::{Chat, GroupInvitation, RoomAccess, RoomKind, RoomState, User, UserId};
use super::rules::{self, Whom};
use super::store::{GroupChange, StoreError};
use super::{Error, Natter, Result, now_ms, secrets};

/// How long a declined invitation keeps the group from asking again.
pub const DECLINE_REMEMBERED: Duration = Duration::from_secs(30 * 24 * 3600);
/// Pending invitations a person may have at once; more are refused
/// (`rate_limited`) until they answer some.
pub const MAX_PENDING_GROUP_INVITATIONS: i64 = 100;

/// What became of a group add.
#[derive(Debug, Clone, PartialEq)]
pub enum Added {
    /// The person is a member: the group as the adder now sees it.
    Member(Box<Chat>),
    /// The person was asked: they join when they accept.
    Invited,
}

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
            if user.id != me.id && !members.iter().any(|m: &User| m.id == user.id) {
                members.push(user);
            }
        }
        let mut asked = Vec::new();
        for member in &members {
            self.budgets.add(me.id, member.id)?;
            if self.needs_consent(me, None, member.id).await? {
                asked.push(member.id);
            }
        }
        let joining: Vec<UserId> = members
            .iter()
            .map(|m| m.id)
            .filter(|id| !asked.contains(id))
            .collect();
        let rid = secrets::new_room_id();
        let note = format!("{} created the group “{title}”", me.username);
        let change = GroupChange::Create {
            title: &title,
            members: &joining,
        };
        self.store
            .change_group(&rid, me, change, &note, now_ms())
            .await?;
        for user in asked {
            self.ask_to_join(me, &rid, user).await?;
        }
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

    /// Adds the user with `email` to a group, or asks them (see the module's
    /// documentation); its owner only.
    pub async fn add_member(&self, me: &User, rid: &str, email: Result<String>) -> Result<Added> {
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
        if let RoomAccess::Member(_) = self.store.room_access(rid, user.id).await? {
            return Err(Error::AlreadyMember);
        }
        if self.needs_consent(me, Some(rid), user.id).await? {
            self.ask_to_join(me, rid, user.id).await?;
            return Ok(Added::Invited);
        }
        let note = format!("{} added {}", me.username, user.username);
        let change = GroupChange::Add { user: user.id };
        self.change_group(me, rid, change, &note, &[]).await?;
        Ok(Added::Member(Box::new(self.chat(me, rid).await?)))
    }

    /// Whether adding `user` (to group `rid`, or to a new group) must ask
    /// them first; refused outright between people one of whom blocks the other.
    async fn needs_consent(&self, me: &User, rid: Option<&str>, user: UserId) -> Result<bool> {
        if self.store.blocked_either_way(me.id, user).await? {
            return Err(Error::Blocked);
        }
        if let Some(rid) = rid
            && self.store.left_group(rid, user).await?
        {
            return Ok(true);
        }
        Ok(match self.account_rules.group_adds {
            GroupAdds::Direct => false,
            GroupAdds::Consent => !self.store.share_a_room(me.id, user).await?,
        })
    }

    /// Invites `user` to group `rid` on behalf of `me`. Asking again while
    /// they have not answered is no error; asking after a recent "no" is.
    async fn ask_to_join(&self, me: &User, rid: &str, user: UserId) -> Result<()> {
        let now = now_ms();
        let remembered = DECLINE_REMEMBERED.as_millis() as i64;
        let asked = self
            .store
            .invite_to_group(
                rid,
                user,
                me.id,
                now,
                now - remembered,
                MAX_PENDING_GROUP_INVITATIONS,
            )
            .await?;
        if asked {
            return Ok(());
        }
        match self.store.group_invitation_state(rid, user).await? {
            Some(None) => Ok(()),
            Some(Some(_)) => Err(Error::Declined),
            None => Err(Error::RateLimited),
        }
    }

    /// The invitations to groups waiting for my answer, newest first.
    pub async fn group_invitations(&self, me: &User) -> Result<Vec<GroupInvitation>> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        Ok(self.store.group_invitations(me.id).await?)
    }

    /// Accepts an invitation: I join the group; returns it as I now see it.
    pub async fn accept_group_invitation(&self, me: &User, rid: &str) -> Result<Chat> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let pending = self.store.group_invitations(me.id).await?;
        let invitation = pending
            .into_iter()
            .find(|i| i.room_id == rid)
            .ok_or(Error::NoSuchGroupInvitation)?;
        if !self.store.take_group_invitation(rid, me.id).await? {
            return Err(Error::NoSuchGroupInvitation);
        }
        let note = format!(
            "{} joined, invited by {}",
            me.username, invitation.invited_by_username
        );
        match self
            .change_group(me, rid, GroupChange::Add { user: me.id }, &note, &[])
            .await
        {
            Ok(()) | Err(Error::AlreadyMember) => {}
            Err(e) => return Err(e),
        }
        self.store
            .note_departure(rid, me.id, false, now_ms())
            .await?;
        self.chat(me, rid).await
    }

    /// Declines an invitation: the group cannot ask again for a while.
    pub async fn decline_group_invitation(&self, me: &User, rid: &str) -> Result<()> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        match self.store.decline_group(rid, me.id, now_ms()).await? {
            true => Ok(()),
            false => Err(Error::NoSuchGroupInvitation),
        }
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
        .await?;
        if target == me.id {
            self.store
                .note_departure(rid, me.id, true, now_ms())
                .await?;
        }
        Ok(())
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
