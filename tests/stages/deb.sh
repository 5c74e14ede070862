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

t0=$(date +%s%N)
deb=$(build_deb)
[ -f "$deb" ] || { echo "FAIL: cargo deb produced no package"; exit 1; }
pass "cargo deb --strip: $deb ($(stat -c %s "$deb") bytes, $((($(date +%s%N) - t0) / 1000000)) ms)"

# lintian prints one line per tag; overridden tags are hidden. Any E: or W:
# fails; I:/P:/X: are reported and fail too, since none are expected.
tags=$(timeout 120 lintian --pedantic -E -I --tag-display-limit 0 "$deb" 2>&1 |
  grep -v 'running with root privileges' || true)
if [ -z "$tags" ]; then
  pass "lintian --pedantic -E -I: no tags ($(grep -c '^motherstream:' packaging/lintian-overrides) overridden, each with a reason)"
else
  fail "lintian:"
  printf '  %s\n' "$tags"
fi
# Each override must be preceded by a one-line comment giving the reason.
awk '/^motherstream:/ && prev !~ /^# ./ { bad = 1; print "  override without a reason: " $0 } { prev = $0 } END { exit bad }' \
  packaging/lintian-overrides && pass "every lintian override has a reason" || fail "lintian overrides without a reason"

field() { dpkg-deb -f "$deb" "$1"; }
[[ "$(field Depends)" =~ (^|, )ffmpeg(,|$) && "$(field Depends)" =~ (^|, )procps(,|$) ]] && pass "Depends: $(field Depends)" || fail "Depends lacks ffmpeg or procps: $(field Depends)"
[ "$(field Recommends)" = "nginx, libnginx-mod-rtmp" ] && pass "Recommends: $(field Recommends)" || fail "Recommends: $(field Recommends)"
[ "$(field Suggests)" = "obs-studio" ] && pass "Suggests: $(field Suggests)" || fail "Suggests: $(field Suggests)"

ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl/DEBIAN"
dpkg-deb -x "$deb" "$ctl/root"
[ "$(cat "$ctl/DEBIAN/conffiles")" = "/etc/motherstream/motherstream.toml" ] &&
  pass "conffiles: /etc/motherstream/motherstream.toml" || fail "conffiles: $(cat "$ctl/DEBIAN/conffiles")"

for f in usr/bin/motherstream usr/lib/systemd/system/motherstream.service \
  usr/lib/sysusers.d/motherstream.conf etc/motherstream/motherstream.toml \
  usr/share/doc/motherstream/examples/nginx-rtmp.conf usr/share/man/man8/motherstream.8.gz \
  usr/share/doc/motherstream/changelog.Debian.gz usr/share/doc/motherstream/copyright \
  usr/share/doc/motherstream/README.Debian; do
  [ -f "$ctl/root/$f" ] && pass "package holds /$f" || fail "package lacks /$f"
done
cmp -s "$ctl/root/usr/lib/systemd/system/motherstream.service" systemd/motherstream.service &&
  pass "packaged unit = systemd/motherstream.service" || fail "packaged unit differs from systemd/motherstream.service"
file "$ctl/root/usr/bin/motherstream" | grep -q 'stripped' && ! file "$ctl/root/usr/bin/motherstream" | grep -q 'not stripped' &&
  pass "binary is stripped" || fail "binary is not stripped"

# Maintainer scripts: sysusers before start, enable+start on install,
# restart on upgrade, stop on remove, purge removes config, state and logs.
grep -q 'systemd-sysusers .*motherstream.conf' "$ctl/DEBIAN/postinst" &&
  grep -q 'deb-systemd-helper enable motherstream.service' "$ctl/DEBIAN/postinst" &&
  grep -q '_dh_action=restart' "$ctl/DEBIAN/postinst" &&
  pass "postinst: sysusers, enable, start (restart on upgrade)" || fail "postinst lacks sysusers/enable/start/restart"
grep -q 'deb-systemd-invoke stop motherstream.service' "$ctl/DEBIAN/prerm" && pass "prerm: stop on remove" || fail "prerm lacks stop"
grep -q 'rm -rf /var/lib/motherstream /var/log/motherstream /etc/motherstream' "$ctl/DEBIAN/postrm" &&
  grep -q 'deb-systemd-helper purge motherstream.service' "$ctl/DEBIAN/postrm" &&
  pass "postrm: purge removes state, logs and config" || fail "postrm purge incomplete"
for s in postinst prerm postrm; do
  sh -n "$ctl/DEBIAN/$s" || fail "$s: shell syntax"
done

warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$ctl/root/usr/share/man/man8/motherstream.8.gz" 2>&1 >/dev/null || true)
[ -z "$warn" ] && pass "man page renders without groff warnings" || { fail "man page warnings:"; printf '  %s\n' "$warn"; }
for section in SYNOPSIS OPTIONS CONFIGURATION ENVIRONMENT 'HTTP ENDPOINTS' SIGNALS FILES; do
  grep -q "^\.SH \"\?$section" packaging/motherstream.8 || fail "man page lacks section $section"
done

[ "$fails" -eq 0 ] || { echo "deb: $fails check(s) failed"; exit 1; }
echo "deb: all checks passed"
