//! One error type for every rule the domain enforces.
//!
//! Each variant carries the contract's error `code`; the HTTP layer maps it to a
//! status and the Socket.IO layer to an ack, so a rule is refused the same way
//! whichever door the request came through.

use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input: a missing field, a wrong type, a value out of its range.
    #[error("{0}")]
    Invalid(Cow<'static, str>),
    /// Like `Invalid`, naming the form field at fault so a page can show it there.
    #[error("{why}")]
    Field {
        field: &'static str,
        why: Cow<'static, str>,
    },
    #[error("that username or email is already taken")]
    Taken,
    #[error("wrong email or password")]
    BadCredentials,
    /// The password was right, but an operator disabled the account.
    #[error("this account is disabled")]
    Disabled,
    #[error("missing, expired or revoked credentials")]
    Unauthorized,
    #[error("no user has that email")]
    NoSuchUser,
    #[error("you have no session with that id")]
    NoSuchSession,
    #[error("you have no push subscription with that id")]
    NoSuchSubscription,
    #[error("you cannot open a chat with yourself")]
    SelfChat,
    /// Registration on an invite-only server, without an invitation.
    #[error("this server takes new accounts by invitation only")]
    InviteRequired,
    /// Registration on a closed server: accounts are made by its operator.
    #[error("this server takes no new accounts")]
    RegistrationClosed,
    /// An invitation that is unknown, used up, expired or revoked.
    #[error("this invitation cannot be used: it is unknown, used up, expired or revoked")]
    BadInvite,
    /// Something only an admin may do (or a member, where the admin allows it).
    #[error("only an admin may do that")]
    NotAdmin,
    #[error("no such invitation of yours")]
    NoSuchInvite,
    /// One of the two people blocked the other: no direct chat, no group add.
    #[error("you cannot reach this person")]
    Blocked,
    /// The person declined an invitation to this group lately.
    #[error("they declined this group lately; it cannot ask them again yet")]
    Declined,
    /// No pending invitation of mine to that group.
    #[error("no pending invitation to that group")]
    NoSuchGroupInvitation,
    /// No avatar for that user.
    #[error("no avatar")]
    NoAvatar,
    /// Password reset by email is off: the server has no SMTP settings.
    #[error("password reset by email is not set up on this server")]
    ResetUnavailable,
    /// A reset link that is unknown, used, expired, or its account's disabled.
    #[error("this reset link cannot be used: it is unknown, used or expired")]
    BadResetLink,
    #[error("you are not a member of that room")]
    NotMember,
    #[error("no such room")]
    NoSuchRoom,
    #[error("that is a direct chat, not a group")]
    NotGroup,
    #[error("only the group's owner may do that")]
    NotOwner,
    #[error("already a member of that group")]
    AlreadyMember,
    #[error("no such message in that room")]
    NoSuchMessage,
    #[error("only its sender may change a message")]
    NotSender,
    #[error("that message was deleted")]
    Deleted,
    #[error("the message is empty")]
    Empty,
    #[error("the message is longer than {0} characters")]
    TooLong(usize),
    /// An upload past the size limit (in bytes); nothing of it is kept.
    #[error("the file is larger than {0} bytes")]
    FileTooLarge(u64),
    /// No attachment by that id, or none this user may see.
    #[error("no such attachment")]
    NoSuchAttachment,
    /// Too many requests of one kind in a short time (see `budget`).
    #[error("too many requests; slow down")]
    RateLimited,
    /// Too many login or registration attempts; try again after this long.
    #[error("too many attempts; try again in {} seconds", .0.as_secs())]
    TooManyAttempts(std::time::Duration),
    #[error("too many connections")]
    TooManyConnections,
    /// A search ran out of its time budget and was stopped.
    #[error("the search took too long; add words or make them longer")]
    SearchTimeout,
    #[error("the server is shutting down; reconnect and send again")]
    ShuttingDown,
    /// The database could not be reached in time: nothing was done (or, for a
    /// send, it may have been: send again with the same `client_id`).
    #[error("the server cannot reach its database; try again shortly")]
    Unavailable,
    /// A bot token whose scopes or rooms do not cover the action (and a
    /// socket with a bot token: see `domain::bots`).
    #[error("this token's scopes do not allow that")]
    ForbiddenScope,
    #[error("you have no bot with that id")]
    NoSuchBot,
    #[error("that bot has no token with that id")]
    NoSuchBotToken,
    /// An incoming webhook that does not exist, was deleted, or whose
    /// creator left its room; or none of the caller's outgoing webhooks.
    #[error("no such webhook")]
    NoSuchWebhook,
    /// A count budget is full: of what, and how many are allowed.
    #[error("you have the most {0} allowed ({1}); delete one first")]
    TooMany(&'static str, usize),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// The stable, machine-readable code of PROTOCOL.md.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) | Error::Field { .. } => "invalid",
            Error::Taken => "taken",
            Error::BadCredentials => "bad_credentials",
            Error::Disabled => "disabled",
            Error::Unauthorized => "unauthorized",
            Error::NoSuchUser => "no_such_user",
            Error::NoSuchSession => "no_such_session",
            Error::NoSuchSubscription => "not_found",
            Error::SelfChat => "self",
            Error::InviteRequired => "invite_required",
            Error::RegistrationClosed => "registration_closed",
            Error::BadInvite => "invalid_invite",
            Error::NotAdmin => "not_admin",
            Error::NoSuchInvite => "not_found",
            Error::Blocked => "blocked",
            Error::Declined => "declined",
            Error::NoSuchGroupInvitation | Error::NoAvatar => "not_found",
            Error::ResetUnavailable => "reset_unavailable",
            Error::BadResetLink => "invalid_reset",
            Error::NotMember => "not_member",
            Error::NoSuchRoom => "no_such_room",
            Error::NotGroup => "not_group",
            Error::NotOwner => "not_owner",
            Error::AlreadyMember => "already_member",
            Error::NoSuchMessage => "no_such_message",
            Error::NotSender => "not_sender",
            Error::Deleted => "deleted",
            Error::Empty => "empty",
            Error::TooLong(_) => "too_long",
            Error::FileTooLarge(_) => "too_large",
            Error::NoSuchAttachment => "not_found",
            Error::RateLimited | Error::TooManyAttempts(_) => "rate_limited",
            Error::TooManyConnections => "too_many_connections",
            Error::SearchTimeout => "search_timeout",
            Error::ShuttingDown | Error::Unavailable => "unavailable",
            Error::ForbiddenScope => "forbidden_scope",
            Error::NoSuchBot | Error::NoSuchBotToken | Error::NoSuchWebhook => "not_found",
            Error::TooMany(..) => "too_many",
            Error::Internal(_) => "internal",
        }
    }

    pub fn invalid(why: impl Into<Cow<'static, str>>) -> Self {
        Error::Invalid(why.into())
    }

    /// Attributes an `Invalid` error to a form field; other errors pass through.
    pub fn in_field(self, field: &'static str) -> Self {
        match self {
            Error::Invalid(why) => Error::Field { field, why },
            other => other,
        }
    }
}

/// A store failure the caller did not handle as a rule (callers that expect
/// a conflict, such as registration, match it before this conversion).
impl From<super::store::StoreError> for Error {
    fn from(e: super::store::StoreError) -> Self {
        match e {
            super::store::StoreError::Unavailable(why) => {
                tracing::warn!(error = why, "database unreachable");
                Error::Unavailable
            }
            e => Error::Internal(e.into()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
