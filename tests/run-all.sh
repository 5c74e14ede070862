#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine: installs what it
# needs (Debian packages, cargo tools), then runs lint, unit, integration,
# unit-file and system tests. Every stage prints its result; the script
# exits non-zero when any stage fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

# shellcheck source=tests/lib/install-deps.sh
source tests/lib/install-deps.sh
install_deps

stage() { echo; echo "==== $* ===="; }

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy"
cargo clippy --all-targets --all-features -- -D warnings -W clippy::too_many_lines

# The release binary, built once: the .deb stage packages it (cargo deb
# runs this same build and finds it up to date), and the hand-over test
# holds it to the issue's 0.1 s bounds (tests/it/handover.rs).
stage "cargo build --release (the packaged binary; the hand-over test runs it)"
cargo build --release --bin motherstream
export MOTHERSTREAM_RELEASE_BIN="$PWD/target/release/motherstream"

stage "cargo test (unit + integration against real nginx-rtmp, ffmpeg, OBS)"
cargo test --all-features -- --test-threads="${TEST_THREADS:-2}"

for extra in tests/stages/*.sh; do
  [ -e "$extra" ] || continue
  stage "$extra"
  bash "$extra"
done

echo
echo "all stages passed"
