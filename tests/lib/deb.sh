# shellcheck shell=bash
# Builds the .deb with cargo-deb (installing cargo-deb when missing) and
# prints its path. Sourced by tests/stages/deb.sh and tests/stages/system.sh;
# the second call finds the release build up to date and takes seconds.

ensure_cargo_deb() {
  command -v cargo-deb >/dev/null 2>&1 && return 0
  echo "installing cargo-deb (cargo install cargo-deb --locked)" >&2
  timeout 900 cargo install cargo-deb --locked >&2
}

# Prints the path of the freshly built package on stdout; build output goes
# to stderr.
build_deb() {
  ensure_cargo_deb || return 1
  local out
  out=$(timeout 1800 cargo deb --strip 2>&1) || {
    printf '%s\n' "$out" | tail -30 >&2
    return 1
  }
  printf '%s\n' "$out" | grep -v '^/' | grep -iE 'warning|error' >&2 || true
  printf '%s\n' "$out" | grep -E '^/.*\.deb$' | tail -1
}
