//! motherstream: a queue of live streamers sharing one channel.
//!
//! Threads and channels, no async runtime: HTTP workers turn nginx-rtmp
//! hooks into commands for one engine thread, which owns the queue state and
//! the ffmpeg relay child. See DESIGN in the README.

pub mod config;
pub mod hook;
pub mod log;
pub mod obs;
