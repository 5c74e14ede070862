#!/bin/bash
# The system test inside the booted guest (run by lab-runner.service as root;
# see tests/stages/system.sh). /lab holds the .deb; results go to /lab/out.
# Real systemd, nginx-rtmp, ffmpeg and apt: no fakes. Every wait is bounded.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
cd / || exit 1

T0=$(date +%s%N)
fails=0
now_ms() { echo $((($(date +%s%N) - T0) / 1000000)); }
pass() { printf 'PASS [%6s ms] %s\n' "$(now_ms)" "$*"; }
fail() { printf 'FAIL [%6s ms] %s\n' "$(now_ms)" "$*"; fails=$((fails + 1)); }
note() { printf '     [%6s ms] %s\n' "$(now_ms)" "$*"; }
# check DESCRIPTION COMMAND...: PASS when COMMAND succeeds.
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
# wait_for SECONDS COMMAND...: retry COMMAND every 0.2 s, at most SECONDS.
wait_for() {
  local end=$(($(date +%s) + $1))
  shift
  until "$@"; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}
prop() { systemctl show -P "$1" motherstream.service; }
main_pid() { prop MainPID; }
active() { [ "$(systemctl is-active motherstream.service)" = active ]; }
http() { curl -fsS --max-time 5 "http://127.0.0.1:8483$1"; }
queue() { http /queue-json | tr -d ' \n'; }
queue_is() { [ "$(queue)" = "$1" ]; }
# Size of the output stream (WxH) as a player sees it.
OUT=rtmp://127.0.0.1/motherstream/live
out_size() {
  timeout 15 ffprobe -v error -rw_timeout 8000000 -select_streams v:0 \
    -show_entries stream=width,height -of csv=s=x:p=0 "$OUT" 2>/dev/null | head -1
}
out_is() { [ "$(out_size)" = "$1" ]; }
# on_air QUEUE SIZE: the queue reads QUEUE and the output has SIZE, soon.
on_air() { wait_for 10 queue_is "$1" && wait_for 30 out_is "$2"; }
# Relay ffmpeg processes of the service (children run as user motherstream).
relays() { pgrep -u motherstream -x ffmpeg || true; }
# PIDs of processes in the service's cgroup, read from /proc.
service_procs() { grep -l 'motherstream\.service' /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 || true; }
# The daemon's own journal lines since a cursor time: "PRIORITY MESSAGE".
daemon_log() {
  journalctl -u motherstream.service --since "@$1" -o export --no-pager 2>/dev/null |
    awk 'BEGIN { RS = ""; FS = "\n" }
      { p = ""; m = ""; id = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^PRIORITY=/) p = substr($i, 10)
          else if ($i ~ /^MESSAGE=/) m = substr($i, 9)
          else if ($i ~ /^SYSLOG_IDENTIFIER=/) id = substr($i, 19)
        }
        if (id == "motherstream") print p " " m }'
}
publish() { # publish NAME SIZE: an ffmpeg test stream to live/NAME, in the background
  ffmpeg -nostdin -hide_banner -loglevel warning -re \
    -f lavfi -i "testsrc2=size=$2:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
    -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -pix_fmt yuv420p \
    -c:a aac -b:a 64k -f flv "rtmp://127.0.0.1/live/$1" >"/lab/out/publisher-$1.log" 2>&1 &
  echo $!
}
# The nginx client id of the output's publisher (changes when it republishes).
out_client() {
  curl -fsS --max-time 5 --unix-socket /run/motherstream-nginx/control.sock http://localhost/stat 2>/dev/null |
    tr -d '\n' | sed 's/<application>/\n<application>/g' | grep '<name>motherstream</name>' |
    sed 's/<client>/\n<client>/g' | grep '<publishing/>' | sed -n 's/.*<id>\([0-9]*\)<\/id>.*/\1/p' | head -1
}
# A client opening a new connection to /healthz every 20 ms, as nginx's
# hooks do: one line per probe, "CURL_EXIT HTTP_CODE SECONDS".
probe_start() {
  rm -f /lab/out/probe.stop
  (while [ ! -e /lab/out/probe.stop ]; do
    r=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 10 http://127.0.0.1:8483/healthz)
    echo "$? $r"
    sleep 0.02
  done) >"/lab/out/probe-$1.txt" 2>&1 &
  probe_pid=$!
}
probe_stop() { touch /lab/out/probe.stop; wait "$probe_pid" 2>/dev/null; }
# probe_check NAME LABEL: PASS when every probe got a 200; prints the figures.
probe_check() {
  local f="/lab/out/probe-$1.txt" n bad slow
  n=$(wc -l <"$f")
  bad=$(awk '$1 != 0 || $2 != 200' "$f" | wc -l)
  slow=$(awk 'BEGIN { m = 0 } $3 > m { m = $3 } END { printf "%.3f", m }' "$f")
  check "$2: $n hook probes every 20 ms, $bad refused or failed, slowest $slow s" test "$n" -gt 10 -a "$bad" -eq 0
}

finish() {
  journalctl -b --no-pager -o short-precise >/lab/out/journal.txt 2>&1
  echo "inner: $fails failure(s), $(now_ms) ms"
  exit $((fails > 0))
}

note "guest up: $(systemd-detect-virt), systemd $(systemctl --version | head -1 | cut -d' ' -f2)"
wait_for 30 systemctl is-active -q nginx.service || fail "nginx.service not active at boot"

# --- install ---------------------------------------------------------------
deb=$(ls /lab/motherstream_*.deb)
t=$(date +%s%N)
if apt-get install -y "$deb" >/lab/out/apt-install.log 2>&1; then
  pass "apt-get install ./$(basename "$deb") ($((($(date +%s%N) - t) / 1000000)) ms, offline guest)"
else
  fail "apt-get install: $(tail -3 /lab/out/apt-install.log)"
  finish
fi
if active; then
  pass "systemctl is-active motherstream (started by the postinst)"
else
  fail "motherstream not active after install: $(systemctl is-active motherstream), Result=$(prop Result)"
  journalctl -u motherstream --no-pager -o cat | tail -15 | sed 's/^/     /'
  finish
fi
check "systemctl is-enabled motherstream" test "$(systemctl is-enabled motherstream.service)" = enabled
check "motherstream.socket enabled and listening" \
  test "$(systemctl is-enabled motherstream.socket)/$(systemctl is-active motherstream.socket)" = enabled/active
check "journal: the daemon serves on the socket from systemd" \
  sh -c 'journalctl -u motherstream -o cat | grep -q "the socket from systemd (motherstream.socket)"'
check "system user motherstream exists ($(getent passwd motherstream))" \
  sh -c 'getent passwd motherstream | grep -q ":/usr/sbin/nologin$"'
check "StateDirectory /var/lib/motherstream owned by motherstream" test "$(stat -c %U /var/lib/motherstream)" = motherstream
check "LogsDirectory /var/log/motherstream owned by motherstream" test "$(stat -c %U /var/log/motherstream)" = motherstream
start_us=$(prop ExecMainStartTimestampMonotonic)
ready_us=$(prop ActiveEnterTimestampMonotonic)
note "start to READY=1: $(((ready_us - start_us) / 1000)) ms; status: $(prop StatusText)"
check "READY=1 sent and STATUS= set (StatusText non-empty)" test -n "$(prop StatusText)"
check "GET /healthz answers 200" http /healthz >/dev/null
score=$(systemd-analyze security motherstream.service 2>/dev/null | sed -n 's/.*Overall exposure level for motherstream.service: \([0-9.]*\).*/\1/p')
check "systemd-analyze security in the booted guest: ${score:-?}" awk -v s="${score:-99}" 'BEGIN { exit !(s <= 1.0) }'

# The unit's IPAddressDeny=any/IPAddressAllow=localhost only mean something
# if this systemd enforces IP filters (cgroup v2 + BPF): a unit denied
# everything must not reach the daemon on loopback.
check "IP filtering is enforced here: IPAddressDeny=any blocks loopback" \
  sh -c '! timeout 20 systemd-run -q --wait -p IPAddressDeny=any curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:8483/healthz 2>/dev/null'
check "... and IPAddressAllow=localhost lets it through" \
  timeout 20 systemd-run -q --wait -p IPAddressDeny=any -p IPAddressAllow=localhost curl -fsS --max-time 3 -o /dev/null http://127.0.0.1:8483/healthz

# --- nginx with the shipped example ------------------------------------------
cp /usr/share/doc/motherstream/examples/nginx-rtmp.conf /etc/nginx/nginx.conf
check "nginx -t accepts the shipped nginx-rtmp.conf" nginx -t -q
systemctl restart nginx.service
# /stat and /control listen on a unix socket only motherstream's group can reach.
check "nginx restarted with it; /stat answers on its unix socket" sh -c 'curl -fsS --max-time 5 --unix-socket /run/motherstream-nginx/control.sock http://localhost/stat | grep -q "<rtmp>"'
check "... and not on TCP" sh -c '! curl -fsS --max-time 2 -o /dev/null http://127.0.0.1:8080/stat 2>/dev/null'
check "... and the socket's directory is closed to other users" test "$(stat -c %a /run/motherstream-nginx)" = 750
check "... and the motherstream user reaches it" runuser -u motherstream -- curl -fsS --max-time 5 -o /dev/null --unix-socket /run/motherstream-nginx/control.sock http://localhost/stat
sed -i 's|^#control_url = ""|control_url = "http://unix:/run/motherstream-nginx/control.sock:/control"|; s|^#stat_url = ""|stat_url = "http://unix:/run/motherstream-nginx/control.sock:/stat"|' \
  /etc/motherstream/motherstream.toml
check "motherstream check-config accepts the edited config" motherstream check-config >/lab/out/check-config.txt 2>&1
systemctl restart motherstream.service
check "motherstream active after restart with the nginx URLs" active

# --- two streamers: the output switches from one to the other ----------------
# Registered, so that the queue shows their names (an unregistered key is
# shown as guest-<tag>, never as itself); root's CLI acts as the service user.
alice_key=$(motherstream streamer add alice 2>/dev/null)
bob_key=$(motherstream streamer add bob 2>/dev/null)
check "root's streamer add wrote a registry owned by motherstream" \
  test "$(stat -c %U /var/lib/motherstream/streamers.json 2>/dev/null)" = motherstream
alice=$(publish "$alice_key" 320x240)
check "alice queued: /queue-json = [\"alice\"]" wait_for 15 queue_is '["alice"]'
check "output motherstream/live is alice's 320x240" wait_for 30 out_is 320x240
check "relay ffmpeg runs as a child of the service ($(relays | tr '\n' ' '))" test -n "$(relays)"
relay=$(relays | head -1)
check "relay runs sandboxed: seccomp filter, no_new_privs, no capabilities, in motherstream.service" \
  test "$(awk '/^(Seccomp|NoNewPrivs|CapEff):/ { printf "%s ", $2 }' "/proc/$relay/status" 2>/dev/null)$(grep -c 'motherstream\.service' "/proc/$relay/cgroup" 2>/dev/null)" = "0000000000000000 1 2 1"
bob=$(publish "$bob_key" 160x120)
check "bob queued behind alice: [\"alice\",\"bob\"]" wait_for 15 queue_is '["alice","bob"]'
t_switch=$(date +%s)
t=$(date +%s%N)
kill -INT "$alice"
check "alice left: queue [\"bob\"]" wait_for 10 queue_is '["bob"]'
if wait_for 30 out_is 160x120; then
  pass "output switched to bob's 160x120 (seen by a new player $((($(date +%s%N) - t) / 1000000)) ms after alice stopped)"
else
  fail "output did not switch to 160x120 (now: $(out_size))"
fi

# --- the journal shows the switch, with priorities ----------------------------
log=$(daemon_log "$((t_switch - 1))")
printf '%s\n' "$log" | sed 's/^/     journal: /' | tail -8
check "journal: a line about bob going on air, at priority info/notice" \
  sh -c 'printf "%s\n" "$1" | grep -E "^[56] .*bob" -q' _ "$log"
check "journal: no unparsed <N> prefixes in MESSAGE" \
  sh -c '! printf "%s\n" "$1" | grep -qE "^[0-7] <[0-7]>"' _ "$log"
check "journalctl -p info -u motherstream shows the switch" \
  sh -c 'journalctl -u motherstream -t motherstream -p info --since "@$1" -o cat | grep -q bob' _ "$t_switch"

# --- reload: same PID, queue kept; a broken config is refused ----------------
pid=$(main_pid)
restarts=$(prop NRestarts)
t_reload=$(date +%s)
sed -i 's|^#level = "info"|level = "debug"|' /etc/motherstream/motherstream.toml
check "systemctl reload motherstream" timeout 20 systemctl reload motherstream.service
check "after reload: active, same PID $pid, NRestarts $restarts" \
  test "$(systemctl is-active motherstream)/$(main_pid)/$(prop NRestarts)" = "active/$pid/$restarts"
check "after reload: queue kept [\"bob\"], output still 160x120" on_air '["bob"]' 160x120
sleep 0.3
check "journal: the reload applied log.level (info)" \
  sh -c 'printf "%s\n" "$1" | grep -qE "^6 .*log\.level"' _ "$(daemon_log "$t_reload")"
cp /etc/motherstream/motherstream.toml /lab/out/good.toml
echo 'this is not toml' >>/etc/motherstream/motherstream.toml
timeout 20 systemctl reload motherstream.service
check "reload of a broken config: still active, same PID" test "$(systemctl is-active motherstream)/$(main_pid)" = "active/$pid"
sleep 0.5
bad=$(daemon_log "$t_reload" | grep -E '^[0-4] ' || true)
check "journal: the refused config is logged at warning or worse (${bad:0:100})" test -n "$bad"
check "journalctl -p warning shows it" sh -c 'journalctl -u motherstream -t motherstream -p warning --since "@$1" -o cat | grep -q .' _ "$t_reload"
cp /lab/out/good.toml /etc/motherstream/motherstream.toml
timeout 20 systemctl reload motherstream.service

# --- upgrade to a higher version: restarts, state and edited conffile survive
pid=$(main_pid)
restarts=$(prop NRestarts)
client=$(out_client)
check "queue state on disk before the upgrade" test -s /var/lib/motherstream/queue.json
next=$(ls /lab/upgrade/motherstream_*.deb)
t_up=$(date +%s)
probe_start upgrade
if apt-get install -y -o Dpkg::Options::=--force-confold "$next" >/lab/out/apt-upgrade.log 2>&1; then
  pass "apt-get install $(basename "$next") (upgrade $(grep -o 'Unpacking.*' /lab/out/apt-upgrade.log | head -1))"
else
  fail "apt-get upgrade: $(tail -3 /lab/out/apt-upgrade.log)"
fi
sleep 1
probe_stop
check "installed version is now $(dpkg-query -W -f='${Version}' motherstream)" \
  sh -c 'dpkg-query -W -f="\${Version}" motherstream | grep -q "+upgradetest$"'
note "postinst: $(grep -E 'handed over|refused|restarting' /lab/out/apt-upgrade.log | head -2 | tr '\n' ' ')"
check "upgrade handed over in place: same PID $pid, NRestarts $restarts (now $(main_pid), $(prop NRestarts))" \
  test "$(main_pid)/$(prop NRestarts)" = "$pid/$restarts"
check "journal: the new binary took over from the old one" \
  sh -c 'journalctl -u motherstream --since "@$1" -o cat | grep -q "taking over from"' _ "$t_up"
check "the output was not republished (nginx client id $client -> $(out_client))" test -n "$client" -a "$(out_client)" = "$client"
probe_check upgrade "upgrade"
check "after upgrade: active" active
check "after upgrade: edited conffile kept" grep -q '^control_url = ' /etc/motherstream/motherstream.toml
check "after upgrade: queue kept [\"bob\"]" wait_for 10 queue_is '["bob"]'
check "after upgrade: output is bob's 160x120 again" wait_for 30 out_is 160x120

debug=$(daemon_log "$t_reload" | grep -E '^7 ' | head -1)
check "journal: debug lines at priority 7 since log.level=debug (${debug:0:80})" test -n "$debug"
check "journalctl -p info hides them" \
  sh -c '! journalctl -u motherstream -t motherstream -p info --since "@$1" -o cat | grep -qxF "$2"' _ "$t_reload" "${debug#7 }"

# --- no hook refused across restarts (socket activation) ----------------------
probe_start restart
sleep 0.5
t=$(date +%s%N)
systemctl restart motherstream.service
note "systemctl restart took $((($(date +%s%N) - t) / 1000000)) ms"
sleep 1
probe_stop
probe_check restart "systemctl restart"
check "after restart: queue [\"bob\"], output 160x120" on_air '["bob"]' 160x120
restarts=$(prop NRestarts)
probe_start kill9
sleep 0.5
kill -KILL "$(main_pid)"
wait_for 20 sh -c "[ \$(systemctl show -P NRestarts motherstream) -gt $restarts ] && systemctl is-active -q motherstream" ||
  fail "kill -9: not restarted within 20 s"
http /healthz >/dev/null
probe_stop
probe_check kill9 "kill -9 (Restart=on-failure after RestartSec)"
check "after kill -9: queue [\"bob\"], output 160x120" on_air '["bob"]' 160x120

# --- watchdog: a stopped daemon is restarted ---------------------------------
mkdir -p /etc/systemd/system/motherstream.service.d
printf '[Service]\nWatchdogSec=3s\n' >/etc/systemd/system/motherstream.service.d/test-watchdog.conf
systemctl daemon-reload
systemctl restart motherstream.service
check "restarted with WatchdogSec=3s (drop-in): $(prop WatchdogUSec)" test "$(prop WatchdogUSec)" = 3s
restarts=$(prop NRestarts)
pid=$(main_pid)
sleep 7
check "not restarted while it pings the watchdog (7 s > WatchdogSec: NRestarts $restarts -> $(prop NRestarts), PID $pid -> $(main_pid))" \
  test "$(prop NRestarts)/$(main_pid)" = "$restarts/$pid"
if [ "$pid" -gt 0 ] 2>/dev/null && [ "$(prop NRestarts)" = "$restarts" ]; then
  t=$(date +%s%N)
  t_wd=$(date +%s)
  kill -STOP "$pid"
  if wait_for 20 sh -c "[ \$(systemctl show -P NRestarts motherstream) -gt $restarts ] && [ \$(systemctl show -P MainPID motherstream) != $pid ] && systemctl is-active -q motherstream"; then
    pass "watchdog: SIGSTOPped PID $pid replaced by $(main_pid) in $((($(date +%s%N) - t) / 1000000)) ms (NRestarts $restarts -> $(prop NRestarts))"
  else
    fail "watchdog: no restart within 20 s (NRestarts $(prop NRestarts), PID $(main_pid), $(systemctl is-active motherstream))"
  fi
  check "journal: systemd reports the watchdog timeout" \
    sh -c 'journalctl -u motherstream --since "@$1" -o cat | grep -qi "watchdog timeout"' _ "$t_wd"
  check "the stopped daemon is gone" test ! -d "/proc/$pid"
else
  fail "watchdog: no main PID to stop"
fi
check "after the watchdog restart: queue [\"bob\"], output 160x120" on_air '["bob"]' 160x120
rm -r /etc/systemd/system/motherstream.service.d
systemctl daemon-reload

# --- stop: no ffmpeg left behind ---------------------------------------------
check "a relay runs before the stop" test -n "$(relays)"
t_stop=$(date +%s)
t=$(date +%s%N)
# With socket activation a hook (nginx's publish_done of the output, say)
# starts the service again: stopping for good stops the socket too.
systemctl stop motherstream.socket motherstream.service
note "systemctl stop took $((($(date +%s%N) - t) / 1000000)) ms"
check "inactive after stop (Result=$(prop Result))" test "$(systemctl is-active motherstream)/$(prop Result)" = inactive/success
check "no relay ffmpeg left (user motherstream: $(relays | tr '\n' ' '))" test -z "$(relays)"
check "no process left in motherstream.service" test -z "$(service_procs)"
check "the daemon stopped its relay itself (systemd killed nothing)" \
  sh -c '! journalctl -u motherstream --since "@$1" -o cat | grep -qE "Killing process|stop-sigterm. timed out"' _ "$t_stop"

cp /var/log/motherstream/ffmpeg.log* /lab/out/ 2>/dev/null
check "relay log written to /var/log/motherstream/ffmpeg.log" test -s /lab/out/ffmpeg.log

# --- remove, then purge ------------------------------------------------------
systemctl start motherstream.service
check "started again before the removal" active
if apt-get remove -y motherstream >/lab/out/apt-remove.log 2>&1; then pass "apt-get remove"; else fail "apt-get remove: $(tail -3 /lab/out/apt-remove.log)"; fi
check "remove stopped the service" test "$(systemctl is-active motherstream)" != active
check "remove left no process of the service" test -z "$(service_procs)$(relays)"
check "remove kept the config and the state" test -f /etc/motherstream/motherstream.toml -a -f /var/lib/motherstream/queue.json
check "remove took the binary" test ! -e /usr/bin/motherstream
if apt-get purge -y motherstream >/lab/out/apt-purge.log 2>&1; then pass "apt-get purge"; else fail "apt-get purge: $(tail -3 /lab/out/apt-purge.log)"; fi
check "purge: dpkg knows no motherstream" sh -c '! dpkg-query -W -f="\${Status}" motherstream 2>/dev/null | grep -q .'
for d in /etc/motherstream /var/lib/motherstream /var/log/motherstream /run/motherstream \
  /usr/lib/systemd/system/motherstream.service /usr/lib/systemd/system/motherstream.socket \
  /usr/lib/sysusers.d/motherstream.conf \
  /usr/share/doc/motherstream /usr/share/man/man8/motherstream.8.gz; do
  check "purge: $d gone" test ! -e "$d"
done
left=$(find /etc/systemd /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
  -name '*motherstream*' 2>/dev/null)
check "purge: no unit symlinks or deb-systemd-helper state left ${left}" test -z "$left"
check "purge: systemd no longer knows the unit" sh -c '! systemctl cat motherstream.service >/dev/null 2>&1'
note "user motherstream after purge: $(getent passwd motherstream >/dev/null && echo 'kept (Debian policy)' || echo gone)"

kill -INT "$bob" 2>/dev/null
finish
