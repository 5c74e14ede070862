#!/usr/bin/env bash
# A local demo of the whole pipeline on a fresh Debian/Ubuntu machine:
# installs what is missing, builds motherstream (release), starts a private
# nginx-rtmp and the daemon on free loopback ports, and two test publishers
# that take turns (alice publishes, bob queues; every PERIOD seconds the
# streamer on air leaves and comes back a few seconds later at the end of
# the queue). Prints the output URL to watch and the queue as it changes.
#
#   tests/demo.sh [--duration N] [--period S]
#
# Ctrl-C (or --duration N seconds) stops everything it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=0   # 0 = until Ctrl-C
PERIOD=20    # seconds each streamer stays on air
REJOIN=5     # seconds before a streamer who left publishes again
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --period) PERIOD="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=tests/lib/install-deps.sh
source tests/lib/install-deps.sh
install_demo_deps

echo "building motherstream (release)…"
cargo build --release --quiet
BIN="$PWD/target/release/motherstream"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/motherstream-demo.XXXXXX")"
declare -A PUB_PID=()   # streamer key → ffmpeg PID
NGINX_PID=""
DAEMON_PID=""

stop_pid() { # pid signal grace-seconds: signal, wait, then SIGKILL
  local pid="$1" sig="$2" grace="$3" i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping: publishers, motherstream, nginx…"
  for k in "${!PUB_PID[@]}"; do stop_pid "${PUB_PID[$k]}" INT 3; done
  stop_pid "$DAEMON_PID" TERM 5
  stop_pid "$NGINX_PID" TERM 5
  rm -rf "$WORK"
  echo "done."
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Children run in their own sessions (setsid execs in place, so $! is their
# PID): a Ctrl-C reaches only this script, whose trap stops them in order.

# A free loopback TCP port: random, and nothing answers a connect to it.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# GET a path from a local HTTP port with bash only (no curl needed); prints the body.
http_get() {
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: Close\r\n\r\n" "$2" >&3
    sed "1,/^\r\{0,1\}$/d" <&3' _ "$1" "$2"
}
http_status() {
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: Close\r\n\r\n" "$2" >&3
    head -n1 <&3 | cut -d" " -f2' _ "$1" "$2" 2>/dev/null || true
}

RTMP_PORT=$(free_port)
NGINX_HTTP=$(free_port)
HOOK_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/run" "$WORK/nginx/tmp" "$WORK/state"

# The hook secret nginx and the daemon share (a path segment of every hook
# URL: without it, motherstream refuses the hook).
HOOK_SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
(umask 077 && echo "$HOOK_SECRET" > "$WORK/state/hook.secret")
H="http://127.0.0.1:$HOOK_PORT/hook/$HOOK_SECRET"
HOOKS="on_publish $H/on_publish; on_publish_done $H/on_publish_done; on_done $H/on_done; on_play $H/on_play; on_play_done $H/on_play_done;"
N="$WORK/nginx"
cat > "$N/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
worker_processes 1;
pid $N/run/nginx.pid;
error_log $N/logs/error.log info;
events { worker_connections 1024; }
rtmp {
  server {
    listen 127.0.0.1:$RTMP_PORT;
    on_connect $H/on_connect;
    # streamers publish here; idle_streams off lets the relay end with its source
    application live { live on; idle_streams off; $HOOKS }
    # the output (OBS plays it); keep the defaults so viewers survive a switch
    application motherstream { live on; $HOOKS }
  }
}
http {
  access_log off;
  client_body_temp_path $N/tmp/body; proxy_temp_path $N/tmp/proxy;
  fastcgi_temp_path $N/tmp/fastcgi; uwsgi_temp_path $N/tmp/uwsgi; scgi_temp_path $N/tmp/scgi;
  server {
    listen 127.0.0.1:$NGINX_HTTP;
    location /stat { rtmp_stat all; }
    location /control { rtmp_control all; }
  }
}
EOF
setsid nginx -p "$N" -c "$N/nginx.conf" -e "$N/logs/error.log" >"$N/logs/stderr.log" 2>&1 &
NGINX_PID=$!
for _ in $(seq 1 100); do
  [ "$(http_status "$NGINX_HTTP" /stat)" = "200" ] && break
  kill -0 "$NGINX_PID" 2>/dev/null || { cat "$N/logs/stderr.log" "$N/logs/error.log" >&2; exit 1; }
  sleep 0.1
done

cat > "$WORK/motherstream.toml" <<EOF
[http]
listen = "127.0.0.1:$HOOK_PORT"
[rtmp]
host = "127.0.0.1"
port = $RTMP_PORT
control_url = "http://127.0.0.1:$NGINX_HTTP/control"
stat_url = "http://127.0.0.1:$NGINX_HTTP/stat"
[relay]
log_file = "$WORK/ffmpeg.log"
[state]
dir = "$WORK/state"
[log]
target = "stderr"
EOF
# alice and bob are registered streamers: public output shows their names
# (an unregistered key is shown as guest-<tag>, never as the key itself).
declare -A KEY=()
for name in alice bob; do
  KEY[$name]=$("$BIN" --config "$WORK/motherstream.toml" streamer add "$name" 2>>"$WORK/motherstream.log")
done
env -u HOST -u RTMP_PORT -u STATE_DIRECTORY -u LOGS_DIRECTORY -u JOURNAL_STREAM -u NOTIFY_SOCKET \
  setsid "$BIN" --config "$WORK/motherstream.toml" >"$WORK/motherstream.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 100); do
  [ "$(http_status "$HOOK_PORT" /healthz)" = "200" ] && break
  kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/motherstream.log" >&2; exit 1; }
  sleep 0.1
done
[ "$(http_status "$HOOK_PORT" /healthz)" = "200" ] || { echo "motherstream is not serving" >&2; cat "$WORK/motherstream.log" >&2; exit 1; }

# Two streamers that look and sound different.
start_pub() { # streamer name
  local src tone
  case "$1" in
    alice) src="testsrc2=size=640x360:rate=30"; tone=440 ;;
    *) src="smptebars=size=640x360:rate=30"; tone=660 ;;
  esac
  setsid ffmpeg -hide_banner -nostdin -loglevel error -re -f lavfi -i "$src" -f lavfi -i "sine=frequency=$tone" \
    -c:v libx264 -preset ultrafast -tune zerolatency -g 30 -c:a aac -b:a 64k \
    -f flv "rtmp://127.0.0.1:$RTMP_PORT/live/${KEY[$1]}" >>"$WORK/publisher-$1.log" 2>&1 &
  PUB_PID[$1]=$!
  echo "$(date +%T)  $1 starts publishing (pid ${PUB_PID[$1]})"
}
stop_pub() { # streamer name
  echo "$(date +%T)  $1 stops publishing"
  stop_pid "${PUB_PID[$1]}" INT 3
  unset "PUB_PID[$1]"
}

cat <<EOF

motherstream demo is running (everything on 127.0.0.1; files in $WORK)
  watch the output:  ffplay rtmp://127.0.0.1:$RTMP_PORT/motherstream/live
  queue overlay:     http://127.0.0.1:$HOOK_PORT/queue-list
  status JSON:       http://127.0.0.1:$HOOK_PORT/api/status
  moderator console: http://127.0.0.1:$HOOK_PORT/admin  (token: $WORK/state/admin.token)
  queue JSON:        http://127.0.0.1:$HOOK_PORT/queue-json
  daemon log:        $WORK/motherstream.log
alice publishes, bob queues; every ${PERIOD}s the streamer on air leaves and
rejoins ${REJOIN}s later. Ctrl-C stops the demo.

EOF

start_pub alice
sleep 3
start_pub bob

START=$SECONDS
LAST_SWITCH=$SECONDS
declare -A REJOIN_AT=()
SHOWN=""
while :; do
  if [ "$DURATION" -gt 0 ] && [ $((SECONDS - START)) -ge "$DURATION" ]; then
    echo "$(date +%T)  --duration $DURATION reached"
    break
  fi
  kill -0 "$DAEMON_PID" 2>/dev/null || { echo "motherstream exited:" >&2; tail -20 "$WORK/motherstream.log" >&2; exit 1; }
  QUEUE=$(http_get "$HOOK_PORT" /queue-json 2>/dev/null || echo "?")
  HEAD=$(printf '%s' "$QUEUE" | sed -n 's/^\["\([A-Za-z0-9_-]*\)".*/\1/p')
  if [ "$QUEUE" != "$SHOWN" ]; then
    echo "$(date +%T)  queue: $QUEUE   on air: ${HEAD:-nobody}"
    SHOWN="$QUEUE"
  fi
  if [ -n "$HEAD" ] && [ -n "${PUB_PID[$HEAD]:-}" ] && [ $((SECONDS - LAST_SWITCH)) -ge "$PERIOD" ]; then
    stop_pub "$HEAD"
    REJOIN_AT[$HEAD]=$((SECONDS + REJOIN))
    LAST_SWITCH=$SECONDS
  fi
  for k in "${!REJOIN_AT[@]}"; do
    if [ "$SECONDS" -ge "${REJOIN_AT[$k]}" ]; then
      unset "REJOIN_AT[$k]"
      start_pub "$k"
    fi
  done
  sleep 1
done
