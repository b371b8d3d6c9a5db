//! Who may join: the registration mode, the admin role, and invitations.
//!
//! A server is `open` (anyone who reaches it registers), `invite` (an
//! invitation is needed) or `closed` (accounts are made by its operator with
//! `natter user create`). The first account may always be made, in any mode:
//! it is the server's admin, the person who set it up. Admins make
//! invitations; members too where `--members-may-invite` allows. An
//! invitation is a secret code good for `max_uses` registrations until it
//! expires or is revoked; it may name a group its owner made it for, which
//! each person who uses it joins.

use std::time::Duration;

use serde_json::Value;

use super::model::{Invite, RoomAccess, User};
use super::{Error, Natter, Result, now_ms, rules, secrets};

/// Who may register.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone who reaches the server (what the wire contract's clients expect).
    #[default]
    Open,
    /// Only with an invitation.
    Invite,
    /// Nobody: the operator makes accounts (`natter user create`).
    Closed,
}

impl RegistrationMode {
    /// `open`, `invite` or `closed`.
    pub fn parse(text: &str) -> Result<Self> {
        serde_json::from_value(Value::String(text.to_owned()))
            .map_err(|_| Error::invalid("registration must be \"open\", \"invite\" or \"closed\""))
    }
}

/// Who may register, and who may invite.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub struct WhoMayJoin {
    #[serde(rename = "registration")]
    pub mode: RegistrationMode,
    /// Whether members (not only admins) may make invitations.
    pub members_may_invite: bool,
}

impl WhoMayJoin {
    /// As the settings table keeps it (JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a plain struct serialises")
    }

    /// What [`WhoMayJoin::encode`] wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Uses an invitation gives at most.
pub const MAX_INVITE_USES: i64 = 1000;
/// How long an invitation lasts at most, and by default.
pub const MAX_INVITE_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
pub const DEFAULT_INVITE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// A new invitation as a door read it: `{room_id?, max_uses?, expires_in_secs?}`.
#[derive(Debug)]
pub struct NewInvite {
    pub room_id: Result<Option<String>>,
    /// Default 1.
    pub max_uses: Result<i64>,
    pub lifetime: Result<Duration>,
}

impl NewInvite {
    pub fn from_json(payload: &Value) -> Self {
        let whole = |name: &'static str, default: i64, max: i64| match payload.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => match v.as_i64() {
                Some(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(Error::invalid(format!(
                    "{name} must be a whole number from 1 to {max}"
                ))),
            },
        };
        let max_secs = MAX_INVITE_LIFETIME.as_secs() as i64;
        NewInvite {
            room_id: match payload.get("room_id") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(rid)) => Ok(Some(rid.clone())),
                Some(_) => Err(Error::invalid("room_id must be a room id")),
            },
            max_uses: whole("max_uses", 1, MAX_INVITE_USES),
            lifetime: whole(
                "expires_in_secs",
                DEFAULT_INVITE_LIFETIME.as_secs() as i64,
                max_secs,
            )
            .map(|secs| Duration::from_secs(secs as u64)),
        }
    }
}

impl Natter {
    /// Sets who may register and who may invite.
    pub fn with_who_may_join(mut self, rule: WhoMayJoin) -> Self {
        self.who_may_join = rule;
        self
    }

    /// Who may register here (the sign-up page says it).
    pub async fn registration_mode(&self) -> Result<RegistrationMode> {
        Ok(self.who_may_join().await?.mode)
    }

    /// Whether a registration may go on, and with which invitation: the one
    /// it names is used (one use taken), or the mode must let it in without.
    /// The caller gives the use back if the account is not made after all.
    pub(super) async fn admit(&self, invite: Option<&str>) -> Result<Option<Invite>> {
        match (invite, self.who_may_join().await?.mode) {
            (_, RegistrationMode::Closed) if self.store.any_user().await? => {
                Err(Error::RegistrationClosed)
            }
            (Some(code), _) => match self.store.use_invite(code, now_ms()).await? {
                Some(invite) => Ok(Some(invite)),
                None => Err(Error::BadInvite),
            },
            (None, RegistrationMode::Invite) if self.store.any_user().await? => {
                Err(Error::InviteRequired)
            }
            (None, _) => Ok(None),
        }
    }

    /// A new account made with `invite` joins the group it names, as its
    /// own action ("ben joined with ann's invitation"). (A group that is
    /// deleted takes its invitations along.)
    pub(super) async fn join_by_invite(&self, user: &User, invite: &Invite) -> Result<()> {
        let Some(rid) = &invite.room_id else {
            return Ok(());
        };
        // A group's invitations are its owner's: one who is no longer its
        // owner (who left, handing it on) brings nobody in any more.
        match self.store.room_access(rid, invite.created_by).await? {
            RoomAccess::Member(room) if room.owner_id == Some(invite.created_by) => {}
            _ => return Ok(()),
        }
        let inviter = self
            .store
            .members(rid)
            .await?
            .into_iter()
            .find(|m| m.id == invite.created_by)
            .map_or_else(|| "a member".to_owned(), |m| format!("{}'s", m.username));
        let note = format!("{} joined with {inviter} invitation", user.username);
        let change = super::store::GroupChange::Add { user: user.id };
        match self.change_group(user, rid, change, &note, &[]).await {
            Ok(()) | Err(Error::AlreadyMember) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Makes an invitation: admins may; members too with
    /// `--members-may-invite`. One that names a group is its owner's.
    pub async fn create_invite(&self, me: &User, new: NewInvite) -> Result<Invite> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        if !self.who_may_join().await?.members_may_invite && !self.store.is_admin(me.id).await? {
            return Err(Error::NotAdmin);
        }
        let room_id = new.room_id?;
        let max_uses = new.max_uses?;
        let lifetime = new.lifetime?;
        if let Some(rid) = &room_id {
            let room = self.require_member(me, rid).await?;
            if room.kind != super::model::RoomKind::Group {
                return Err(Error::NotGroup);
            }
            if room.owner_id != Some(me.id) {
                return Err(Error::NotOwner);
            }
        }
        let now = now_ms();
        let invite = Invite {
            code: secrets::new_room_id(),
            created_by: me.id,
            room_id,
            max_uses,
            uses: 0,
            expires_at: now + lifetime.as_millis() as i64,
            revoked: false,
            created_at: now,
        };
        self.store.create_invite(&invite).await?;
        Ok(invite)
    }

    /// The invitations I made; an admin sees everyone's.
    pub async fn invites(&self, me: &User) -> Result<Vec<Invite>> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let whose = match self.store.is_admin(me.id).await? {
            true => None,
            false => Some(me.id),
        };
        Ok(self.store.invites(whose).await?)
    }

    /// Revokes one of my invitations (an admin: anyone's); its link stops
    /// working at once. Revoking it again is no error.
    pub async fn revoke_invite(&self, me: &User, code: &str) -> Result<()> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let whose = match self.store.is_admin(me.id).await? {
            true => None,
            false => Some(me.id),
        };
        match self.store.revoke_invite(code, whose, now_ms()).await? {
            true => Ok(()),
            false => Err(Error::NoSuchInvite),
        }
    }

    /// Makes the user with `email` an admin (`natter user create --admin`).
    pub async fn make_admin(&self, email: &str) -> Result<()> {
        let email = rules::email(email)?;
        let user = self
            .store
            .user_by_email(&email)
            .await?
            .ok_or(Error::NoSuchUser)?;
        Ok(self.store.set_admin(user.id).await?)
    }
}
