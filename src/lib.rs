//! motherstream: a queue of live streamers sharing one channel.
//!
//! Threads and channels, no async runtime: HTTP workers turn nginx-rtmp
//! hooks into commands for one engine thread, which owns the queue state and
//! the ffmpeg relay child. `unsafe` is confined to `sys`.
#![deny(unsafe_code)]

pub mod auth;
pub mod clock;
pub mod config;
pub mod engine;
pub mod events;
pub mod handover;
pub mod hook;
pub mod http;
pub mod key;
pub mod listen;
pub mod log;
pub mod login_limit;
pub mod metrics;
pub mod moderation;
pub mod names;
pub mod nginx;
pub mod notify;
pub mod obs;
pub mod private_fs;
pub mod queue;
pub mod recording;
pub mod redact;
pub mod refusal;
pub mod registry;
pub mod relay;
#[cfg(test)]
mod scratch;
pub mod secret;
pub mod store;
pub mod streamer_cmd;
pub mod sys;
pub mod systemd;
pub mod tag;
#[cfg(test)]
mod test_rng;
pub mod view;
pub mod watch;
pub mod watchdog;
