#!/usr/bin/env bash
# Static checks of the systemd unit and sysusers entry, without a booted
# systemd: `systemd-analyze verify` in a scratch root (it exits 0 on unknown
# keys, so ANY output fails), the hardening score, and the sysusers entry applied to a scratch root.
set -euo pipefail
cd "$(dirname "$0")/../.."

unit=systemd/motherstream.service
socket=systemd/motherstream.socket
sysusers=systemd/motherstream.sysusers
max_exposure=10 # tenths: 1.0

fails=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# A root with the stock units (nginx.service, multi-user.target, ...) and
# stubs at every absolute Exec path of the unit, so verify checks our unit
# and not the host's.
mkdir -p "$scratch/etc/systemd/system" "$scratch/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$scratch/usr/lib/systemd/"
[ -e "$scratch/usr/lib/systemd/system/nginx.service" ] ||
  printf '[Unit]\nDescription=stub\n[Service]\nExecStart=/bin/true\n' >"$scratch/usr/lib/systemd/system/nginx.service"
cp "$unit" "$socket" "$scratch/etc/systemd/system/"
for ln in bin sbin lib lib64; do ln -s "usr/$ln" "$scratch/$ln"; done
mkdir -p "$scratch/usr/bin" "$scratch/usr/sbin" "$scratch/usr/lib64"
sed -n 's/^-\?Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' "$unit" | sort -u | while read -r exe; do
  mkdir -p "$scratch$(dirname "$exe")"
  printf '#!/bin/sh\nexit 0\n' >"$scratch$exe"
  chmod 755 "$scratch$exe"
done

out=$(timeout 30 systemd-analyze verify --man=no --root="$scratch" \
  "$scratch/etc/systemd/system/motherstream.service" "$scratch/etc/systemd/system/motherstream.socket" 2>&1) && rc=0 || rc=$?
if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
  pass "systemd-analyze verify: no output"
else
  fail "systemd-analyze verify (rc=$rc):"
  printf '  %s\n' "$out"
fi

out=$(timeout 30 systemd-analyze security --offline=true --threshold="$max_exposure" "$unit" 2>&1) && rc=0 || rc=$?
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
if [ "$rc" -eq 0 ] && [ -n "$score" ]; then
  pass "systemd-analyze security --offline=true: exposure $score (max 1.0)"
else
  fail "systemd-analyze security: exposure ${score:-?} (rc=$rc, max 1.0)"
  printf '%s\n' "$out" | grep -E '^✗' | sed 's/^/  /' || true
fi

# The directives the daemon's contract depends on, present exactly.
for want in 'Type=notify' 'NotifyAccess=main' 'Restart=on-failure' \
  'ExecReload=/bin/kill -HUP $MAINPID' 'User=motherstream' \
  'StateDirectory=motherstream' 'LogsDirectory=motherstream' \
  'ConfigurationDirectory=motherstream' 'SystemCallErrorNumber=EPERM' \
  'StateDirectoryMode=0700' 'LogsDirectoryMode=0700' 'UMask=0077'; do
  if grep -qxF "$want" "$unit"; then pass "unit has $want"; else fail "unit lacks $want"; fi
done
if grep -qE '^WatchdogSec=[1-9]' "$unit"; then pass "unit has a WatchdogSec"; else fail "unit lacks WatchdogSec"; fi
# Room for http.max_connections (one descriptor each) and a memory backstop.
if grep -qE '^LimitNOFILE=([2-9][0-9]{3}|[0-9]{5,})$' "$unit"; then pass "unit raises LimitNOFILE above 1024"; else fail "unit lacks LimitNOFILE >= 2000"; fi
if grep -qE '^MemoryMax=[1-9][0-9]*[MG]$' "$unit"; then pass "unit has a MemoryMax"; else fail "unit lacks MemoryMax"; fi

# Socket activation: the socket listens where [http] listen points by
# default, and the service takes it (no hook refused while it restarts).
default_listen=$(sed -n 's/^#listen = "\(.*\)"$/\1/p' packaging/motherstream.toml)
check_socket() { grep -qxF "ListenStream=$default_listen" "$socket"; }
if check_socket; then pass "socket listens on the default [http] listen $default_listen"; else fail "motherstream.socket's ListenStream= is not [http] listen's default ($default_listen)"; fi
for want in 'Requires=motherstream.socket' 'After=motherstream.socket'; do
  if grep -qxF "$want" "$unit"; then pass "unit has $want"; else fail "unit lacks $want"; fi
done

mkdir -p "$scratch/sysroot/etc"
out=$(timeout 30 systemd-sysusers --root="$scratch/sysroot" - <"$sysusers" 2>&1) && rc=0 || rc=$?
if [ "$rc" -eq 0 ] && grep -q '^motherstream:' "$scratch/sysroot/etc/passwd" 2>/dev/null &&
  ! grep -q '^motherstream:.*:/bin/\(ba\)\?sh$' "$scratch/sysroot/etc/passwd"; then
  pass "sysusers creates the motherstream system user ($(grep '^motherstream:' "$scratch/sysroot/etc/passwd"))"
else
  fail "systemd-sysusers (rc=$rc): $out"
fi

[ "$fails" -eq 0 ] || { echo "unit-file: $fails check(s) failed"; exit 1; }
echo "unit-file: all checks passed"
