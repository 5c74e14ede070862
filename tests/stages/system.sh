#!/usr/bin/env bash
# System test: the .deb installed into a real, booted systemd.
#
# Builds the package, ensures the cached Debian bookworm rootfs
# (tests/lib/rootfs.sh), boots it with systemd-nspawn on a throw-away overlay
# (--volatile=overlay: the cache stays clean) with no network but loopback,
# and lets tests/system/inner.sh run inside as a oneshot unit. The guest
# powers off with the inner test's exit code. Every step prints PASS/FAIL;
# the stage fails on any FAIL, on a timeout and on a missing result.
set -euo pipefail
cd "$(dirname "$0")/../.."
# debootstrap and systemd-nspawn need root.
if [ "$(id -u)" -ne 0 ]; then exec sudo -E bash "$0" "$@"; fi
# shellcheck source=tests/lib/deb.sh
source tests/lib/deb.sh
# shellcheck source=tests/lib/rootfs.sh
source tests/lib/rootfs.sh

boot_timeout=${SYSTEM_TEST_TIMEOUT:-420}
t_start=$(date +%s%N)
since() { echo "$((($(date +%s%N) - $1) / 1000000)) ms"; }

deb=$(build_deb)
[ -f "$deb" ] || { echo "FAIL: no .deb built"; exit 1; }
echo "PASS: package built: $(basename "$deb")"
# One build at a time; a running test holds the rootfs shared so that a
# concurrent run never rebuilds it underneath.
mkdir -p "$(dirname "$ROOTFS_CACHE")"
exec 9>"$ROOTFS_CACHE.lock"
flock -w 1200 -x 9 || { echo "FAIL: rootfs lock"; exit 1; }
rootfs_ensure || { echo "FAIL: rootfs"; exit 1; }
flock -s 9
echo "PASS: rootfs ready ($(since "$t_start") so far)"

lab=$(mktemp -d "${TMPDIR:-/tmp}/motherstream-lab.XXXXXX")
mkdir "$lab/out"
cp "$deb" "$lab/"
# The same build under a higher version, for a real upgrade in the guest.
version=$(dpkg-deb -f "$deb" Version)
mkdir "$lab/upgrade"
cargo deb --no-build --strip --deb-version "$version+upgradetest" -o "$lab/upgrade/" >/dev/null 2>&1 ||
  { echo "FAIL: building the upgrade package"; exit 1; }
cp tests/system/inner.sh "$lab/inner.sh"
chmod -R a+rX "$lab"

nspawn_pid=""
cleanup() {
  # Stop the container by its nspawn PID only: SIGTERM asks the guest to
  # power off, SIGKILL after 10 s takes the whole PID namespace down.
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    echo "cleanup: stopping systemd-nspawn (pid $nspawn_pid)"
    kill -TERM "$nspawn_pid" 2>/dev/null || true
    timeout 10 tail --pid="$nspawn_pid" -f /dev/null || kill -KILL "$nspawn_pid" 2>/dev/null || true
  fi
  if [ -n "${KEEP_LAB:-}" ]; then echo "lab kept: $lab"; else rm -rf "$lab"; fi
}
trap cleanup EXIT

# systemd-nspawn prints the guest console only to a terminal: give it a pty
# with script(1). The unified cgroup hierarchy, all capabilities and the bpf
# syscall let the guest's systemd enforce IPAddressDeny= and friends.
t_boot=$(date +%s%N)
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 script -qfec "echo \$\$ >'$lab/nspawn.pid'; exec systemd-nspawn -q \
  -D '$ROOTFS_CACHE' -b --volatile=overlay --register=no --keep-unit \
  --machine=motherstream-test-$$ --private-network \
  --capability=all --system-call-filter=bpf \
  --bind='$lab:/lab' --console=read-only" /dev/null \
  </dev/null >"$lab/console.log" 2>&1 &
script_pid=$!
for _ in $(seq 50); do [ -s "$lab/nspawn.pid" ] && break; sleep 0.1; done
nspawn_pid=$(cat "$lab/nspawn.pid" 2>/dev/null || true)

if timeout "$boot_timeout" tail --pid="$script_pid" -f /dev/null; then
  wait "$script_pid" && rc=0 || rc=$?
else
  echo "FAIL: the guest did not finish within ${boot_timeout} s"
  rc=124
fi

if [ -f "$lab/out/inner.log" ]; then
  cat "$lab/out/inner.log"
else
  echo "FAIL: the inner test left no output; last console lines:"
  tail -40 "$lab/console.log" | sed 's/^/  /'
fi
inner_rc=$(cat "$lab/out/rc" 2>/dev/null || echo missing)
echo "system: guest exit $rc, inner test exit $inner_rc, boot to power-off $(since "$t_boot"), stage $(since "$t_start")"
if [ "$rc" -ne 0 ] || [ "$inner_rc" != 0 ]; then
  if [ -f "$lab/out/journal.txt" ]; then
    echo "--- guest journal (motherstream, last 60 lines) ---"
    grep -F motherstream "$lab/out/journal.txt" | tail -60
  fi
  exit 1
fi
echo "system: all checks passed"
