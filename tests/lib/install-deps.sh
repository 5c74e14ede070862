# Installs the Debian packages and cargo tools the tests need, only those
# that are missing. Sourced by tests/run-all.sh and tests/demo.sh.

# What the demo needs (run the pipeline, build the daemon: native-tls wants
# libssl-dev + pkg-config); the test stages add theirs from tests/stages/*.deps.
MS_PKGS=(nginx libnginx-mod-rtmp ffmpeg libssl-dev pkg-config)

need_pkgs() { MS_PKGS+=("$@"); }

install_pkgs() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The demo's own packages only: no OBS, chromium or debootstrap.
install_demo_deps() {
  install_pkgs "${MS_PKGS[@]}"
}

install_deps() {
  # Stages declare extra packages in tests/stages/*.deps (one name a line).
  for f in tests/stages/*.deps; do
    [ -e "$f" ] || continue
    while read -r p; do [ -n "$p" ] && [ "${p#\#}" = "$p" ] && MS_PKGS+=("$p"); done < "$f"
  done
  install_pkgs "${MS_PKGS[@]}"
}
