//! Natter: a self-hosted instant messenger server.
//!
//! - [`domain`]: users, rooms, messages and their rules — the one core;
//! - [`store`]: persistence behind the [`store::Store`] trait;
//! - [`files`]: attachments' bytes behind the [`files::FileStore`] trait, and
//!   what is done to an upload (its type, metadata, thumbnail);
//! - [`http`]: web pages and the JSON API; [`realtime`]: Socket.IO;
//! - [`app`]: startup and graceful shutdown; [`config`]: flags and environment;
//! - [`ops`]: the operations commands (users, backup, export, migrate).
//! - [`telemetry`]: Prometheus metrics; [`webpush`]: Web Push over HTTP;
//!   [`mail`]: mail over SMTP (password reset links).
//!   [`webhooks`]: outgoing webhooks' requests.

pub mod app;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod files;
pub mod http;
pub mod mail;
pub mod ops;
pub mod realtime;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod webhooks;
pub mod webpush;
