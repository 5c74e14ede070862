//! The benches: commands that print figures, old way and new way side by
//! side in one run. They live in the integration-test binary so that they
//! share its harness (`tests/common`) without a second copy of it; each is
//! an ignored test, run on its own with optimisations:
//!
//! `cargo test --release --test it -- --ignored --nocapture bench::pipeline`
//!
//! Each takes the heavy turn (`common::heavy_turn`), so a bench started
//! with other tests still measures alone. Their
//! environment variables are described at the top of each file.

mod console_load;
mod handover;
mod idle_wakeups;
mod long_gop_cuts;
mod obs_switch;
mod pipeline;
mod source_reader;

use crate::common::heavy_turn;

/// Runs one bench under the heavy turn.
fn bench(main: fn()) {
    let _turn = heavy_turn();
    main();
}

#[test]
#[ignore = "bench: prints figures; run with --release --ignored --nocapture"]
fn console_load() {
    bench(console_load::main);
}

#[test]
#[ignore = "bench: prints figures; run with --release --ignored --nocapture"]
fn handover() {
    bench(handover::main);
}

#[test]
#[ignore = "bench: prints figures; run with --release --ignored --nocapture"]
fn idle_wakeups() {
    bench(idle_wakeups::main);
}

#[test]
#[ignore = "bench: prints figures; run with --release --ignored --nocapture"]
fn long_gop_cuts() {
    bench(long_gop_cuts::main);
}

#[test]
#[ignore = "bench: prints figures; run with --release --ignored --nocapture"]
fn obs_switch() {
    bench(obs_switch::main);
}

#[test]
#[ignore = "bench: prints figures; run with --release --ignored --nocapture"]
fn pipeline() {
    bench(pipeline::main);
}

#[test]
#[ignore = "bench: prints figures; run with --release --ignored --nocapture"]
fn source_reader() {
    bench(source_reader::main);
}
