# shellcheck shell=bash
# A cached Debian bookworm rootfs with systemd, nginx, libnginx-mod-rtmp and
# ffmpeg, for booting with systemd-nspawn. Sourced by tests/stages/system.sh.
#
# The cache lives in tests/.cache/rootfs-bookworm and is rebuilt only when it
# is missing or its recipe (this file's ROOTFS_* settings and the setup steps
# below) changed. It is built in a temporary directory and renamed into place,
# so an interrupted build never leaves a half rootfs behind.

ROOTFS_SUITE=bookworm
ROOTFS_MIRROR=http://deb.debian.org/debian
ROOTFS_INCLUDE=systemd,systemd-sysv,dbus,nginx,libnginx-mod-rtmp,ffmpeg,curl,procps
ROOTFS_CACHE=${ROOTFS_CACHE:-tests/.cache/rootfs-$ROOTFS_SUITE}

# The unit that runs the test inside the booted guest. The lab directory is
# bind-mounted at /lab; the guest powers off with the test's exit code
# (`systemctl exit RC` makes systemd-nspawn exit with RC).
rootfs_runner_unit() {
  cat <<'UNIT'
[Unit]
Description=motherstream system test runner
ConditionPathExists=/lab/inner.sh
After=multi-user.target
Wants=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'rc=0; /bin/bash /lab/inner.sh >/lab/out/inner.log 2>&1 || rc=$?; echo $rc >/lab/out/rc; systemctl exit $rc'
StandardOutput=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
}

# Steps applied to a fresh debootstrap, part of the recipe.
rootfs_setup() {
  local root=$1
  rootfs_runner_unit >"$root/etc/systemd/system/lab-runner.service"
  ln -sf /etc/systemd/system/lab-runner.service \
    "$root/etc/systemd/system/multi-user.target.wants/lab-runner.service"
  # The guest has no network (--private-network); keep boot quick and quiet.
  ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"
  ln -sf /dev/null "$root/etc/systemd/system/apt-daily.timer"
  ln -sf /dev/null "$root/etc/systemd/system/apt-daily-upgrade.timer"
  ln -sf /dev/null "$root/etc/systemd/system/e2scrub_all.timer"
  echo mstest >"$root/etc/hostname"
  # nginx's default site listens on :80; the guest needs only the RTMP setup.
  rm -f "$root/etc/nginx/sites-enabled/default"
  mkdir -p "$root/lab"
  # The downloaded .debs are not needed: the guest installs only the
  # package under test, whose dependencies are all preinstalled.
  rm -rf "$root/var/cache/apt/archives/"*.deb
}

rootfs_recipe() {
  {
    echo "$ROOTFS_SUITE $ROOTFS_MIRROR variant=minbase include=$ROOTFS_INCLUDE"
    declare -f rootfs_runner_unit rootfs_setup
  } | sha256sum | cut -d' ' -f1
}

# Remove a (partial) rootfs. An interrupted debootstrap can leave /proc or
# /sys mounted inside it: unmount those first, and never cross into them.
rootfs_discard() {
  local dir=$1 m
  [ -e "$dir" ] || return 0
  for m in $(findmnt -rn -o TARGET | grep -F "$(realpath "$dir")/" | sort -r); do
    umount -l "$m" || true
  done
  rm -rf --one-file-system "$dir"
}

# Ensure the cached rootfs exists and matches the recipe; prints its path.
rootfs_ensure() {
  local want have tmp t0
  want=$(rootfs_recipe)
  have=$(cat "$ROOTFS_CACHE/.recipe" 2>/dev/null || true)
  if [ "$want" = "$have" ]; then
    echo "rootfs: cached $ROOTFS_CACHE (recipe ${want:0:12})" >&2
    return 0
  fi
  t0=$(date +%s)
  echo "rootfs: building $ROOTFS_CACHE (recipe ${want:0:12}; was ${have:-none})" >&2
  mkdir -p "$(dirname "$ROOTFS_CACHE")"
  tmp="$ROOTFS_CACHE.tmp.$$"
  rootfs_discard "$tmp"
  if ! timeout 900 debootstrap --variant=minbase --include="$ROOTFS_INCLUDE" \
    "$ROOTFS_SUITE" "$tmp" "$ROOTFS_MIRROR" >"$tmp.log" 2>&1; then
    echo "rootfs: debootstrap failed; last lines of $tmp.log:" >&2
    tail -20 "$tmp.log" >&2
    rootfs_discard "$tmp"
    return 1
  fi
  rootfs_setup "$tmp"
  echo "$want" >"$tmp/.recipe"
  rootfs_discard "$ROOTFS_CACHE"
  rm -f "$tmp.log"
  mv "$tmp" "$ROOTFS_CACHE"
  echo "rootfs: built in $(($(date +%s) - t0)) s" >&2
}
