//! Every integration test in one binary: one module per area, sharing the
//! harness in `tests/common` (compiled once, so what no test uses shows as
//! dead code). Tests whose assertions depend on spare CPU, or that run OBS
//! or chromium, take `common::heavy_turn()` and run alone; every other test
//! takes `common::light_turn()`. The benches are here too, ignored unless
//! asked for (see `tests/bench/mod.rs`).
//!
//! `cargo test --all-features --test it -- --test-threads=2 splice::` runs
//! one module's tests.

#[path = "../common/mod.rs"]
mod common;

#[path = "../bench/mod.rs"]
mod bench;

mod admin_and_bad_input;
mod adversarial_admin;
mod adversarial_files;
mod adversarial_http;
mod browser;
mod console;
mod durability;
mod handover;
mod harness;
mod long_gop;
mod long_gop_obs;
mod notify_events;
mod notify_metrics;
mod obs_client;
mod obs_daemon;
mod obs_splice;
mod packaged_config;
mod public_names;
mod queue_pipeline;
mod recording;
mod socket_activation;
mod splice;
mod stall;
mod streamers;
mod structure;
mod systemd;
