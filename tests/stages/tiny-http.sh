#!/usr/bin/env bash
# The patched tiny_http's own unit tests (vendor/tiny_http/PATCHES.md):
# connection cap and deadlines, one request in flight per connection, the
# answer handed back to the connection's thread. Its own target dir: the
# crate is built alone, with its own features.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --manifest-path vendor/tiny_http/Cargo.toml --target-dir target/vendor-test --lib
