#!/usr/bin/env bash
# Builds the Debian package with `cargo deb --strip` and checks it: lintian
# with no errors and no warnings (pedantic, experimental and info tags too;
# every override carries a reason), control fields, conffiles, file list,
# maintainer scripts and the man page.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib/deb.sh
source tests/lib/deb.sh

fails=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# check DESCRIPTION COMMAND...: PASS when COMMAND succeeds.
check() {
  local d=$1
  shift
  if "$@"; then pass "$d"; else fail "$d"; fi
}
has() { grep -q -- "$1" "$2"; }

t0=$(date +%s%N)
deb=$(build_deb)
[ -f "$deb" ] || { echo "FAIL: cargo deb produced no package"; exit 1; }
pass "cargo deb --strip: $deb ($(stat -c %s "$deb") bytes, $((($(date +%s%N) - t0) / 1000000)) ms)"

# lintian prints one line per tag; overridden tags are hidden. Any tag
# fails, E: and W: as well as I:/P:/X:, since none are expected.
tags=$(timeout 120 lintian --pedantic -E -I --tag-display-limit 0 "$deb" 2>&1 |
  grep -v 'running with root privileges' || true)
if [ -z "$tags" ]; then
  pass "lintian --pedantic -E -I: no tags ($(grep -c '^motherstream:' packaging/lintian-overrides) overridden, each with a reason)"
else
  fail "lintian:"
  printf '  %s\n' "$tags"
fi
# Each override must follow a one-line comment giving the reason.
check "every lintian override has a reason" awk '
  /^motherstream:/ && prev !~ /^# ./ { bad = 1; print "  override without a reason: " $0 }
  { prev = $0 } END { exit bad }' packaging/lintian-overrides

depends=$(dpkg-deb -f "$deb" Depends)
check "Depends: $depends" grep -qE '(^|, )ffmpeg(,|$)' <<<"$depends"
check "Depends has procps (/bin/kill for ExecReload)" grep -qE '(^|, )procps(,|$)' <<<"$depends"
check "Recommends: nginx, libnginx-mod-rtmp" test "$(dpkg-deb -f "$deb" Recommends)" = "nginx, libnginx-mod-rtmp"
check "Suggests: obs-studio" test "$(dpkg-deb -f "$deb" Suggests)" = obs-studio

ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl/DEBIAN"
dpkg-deb -x "$deb" "$ctl/root"
check "conffiles: /etc/motherstream/motherstream.toml" \
  test "$(cat "$ctl/DEBIAN/conffiles")" = /etc/motherstream/motherstream.toml
for f in usr/bin/motherstream usr/lib/systemd/system/motherstream.service \
  usr/lib/sysusers.d/motherstream.conf etc/motherstream/motherstream.toml \
  usr/share/doc/motherstream/examples/nginx-rtmp.conf usr/share/man/man8/motherstream.8.gz \
  usr/share/doc/motherstream/changelog.Debian.gz usr/share/doc/motherstream/copyright \
  usr/share/doc/motherstream/README.Debian usr/share/doc/motherstream/README.md \
  usr/share/doc/motherstream/obs.md; do
  check "package holds /$f" test -f "$ctl/root/$f"
done
check "packaged unit = systemd/motherstream.service" \
  cmp -s "$ctl/root/usr/lib/systemd/system/motherstream.service" systemd/motherstream.service
check "packaged socket unit = systemd/motherstream.socket" \
  cmp -s "$ctl/root/usr/lib/systemd/system/motherstream.socket" systemd/motherstream.socket
check "binary is stripped" sh -c 'file "$1" | grep -q ", stripped"' _ "$ctl/root/usr/bin/motherstream"
version=$("$ctl/root/usr/bin/motherstream" --version 2>&1) || true
check "binary runs: $version" test "$version" = "motherstream $(dpkg-deb -f "$deb" Version | sed 's/-[^-]*$//')"

# Maintainer scripts: sysusers before start, enable+start on install, on
# upgrade a hand-over (restart only when it is refused; nothing restarts the
# socket), stop on remove, purge removes config, state and logs.
check "postinst: sysusers" has 'systemd-sysusers .*motherstream.conf' "$ctl/DEBIAN/postinst"
check "postinst: enable" has 'deb-systemd-helper enable motherstream.service' "$ctl/DEBIAN/postinst"
check "postinst: enable the socket" has 'deb-systemd-helper enable motherstream.socket' "$ctl/DEBIAN/postinst"
check "postinst: no generated restart on upgrade" sh -c '! grep -q "_dh_action=restart" "$1"' _ "$ctl/DEBIAN/postinst"
check "postinst: upgrade hands over" has 'motherstream.toml upgrade' "$ctl/DEBIAN/postinst"
check "postinst: restart only when the hand-over is refused" has 'deb-systemd-invoke restart motherstream.service' "$ctl/DEBIAN/postinst"
check "prerm: stop on remove" has 'deb-systemd-invoke stop motherstream.service' "$ctl/DEBIAN/prerm"
check "postrm: purge removes state, logs and config" \
  has 'rm -rf /var/lib/motherstream /var/log/motherstream /etc/motherstream' "$ctl/DEBIAN/postrm"
check "postrm: purge forgets the unit" has 'deb-systemd-helper purge motherstream.service' "$ctl/DEBIAN/postrm"
for s in postinst prerm postrm; do
  check "$s: POSIX shell syntax" sh -n "$ctl/DEBIAN/$s"
done

warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$ctl/root/usr/share/man/man8/motherstream.8.gz" 2>&1 >/dev/null || true)
check "man page renders without groff warnings${warn:+: $warn}" test -z "$warn"
for section in SYNOPSIS OPTIONS CONFIGURATION ENVIRONMENT 'HTTP ENDPOINTS' SIGNALS FILES; do
  check "man page has section $section" grep -q "^\.SH $section" packaging/motherstream.8
done

[ "$fails" -eq 0 ] || { echo "deb: $fails check(s) failed"; exit 1; }
echo "deb: all checks passed"
