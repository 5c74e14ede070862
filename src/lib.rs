//! motherstream: a queue of live streamers sharing one channel.
//!
//! Threads and channels, no async runtime: HTTP workers turn nginx-rtmp
//! hooks into commands for one engine thread, which owns the queue state and
//! the ffmpeg relay child. `unsafe` is confined to `sys`.
#![deny(unsafe_code)]
// A `pub` item the crate root cannot reach is an error: inside a module,
// what only the crate uses is `pub(crate)` or narrower.
#![deny(unreachable_pub)]

// `pub` only for what the binary (`main.rs`, `cli/`), the integration tests
// and the benches use, items as well as modules; the rest is `pub(crate)` or
// private, so the compiler reports dead code.

pub mod auth;
pub mod clock;
pub mod config;
pub mod engine;
mod events;
pub mod handover;
pub mod handover_timing;
mod hook;
pub mod http;
pub mod key;
pub mod listen;
pub mod log;
mod login_limit;
pub mod metrics;
mod moderation;
mod names;
pub mod nginx;
pub mod notify;
pub mod obs;
pub mod private_fs;
mod queue;
pub mod recording;
mod redact;
mod refusal;
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
