// A streamer's own page: polls /me/<token>/status once a second (answered
// from the daemon's published view) and shows their place, the estimated
// wait or the time left, and how to set up their encoder.
"use strict";

const $ = id => document.getElementById(id);
let me = null;     // last status
let at = 0;        // performance.now() of that fetch

function fmt(s) {
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), x = s % 60;
  const two = n => String(n).padStart(2, "0");
  return h > 0 ? h + ":" + two(m) + ":" + two(x) : m + ":" + two(x);
}

function clock(unix) {
  return new Date(unix * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function since() { return (performance.now() - at) / 1000; }

function setConn(text, cls) {
  $("conn").textContent = text;
  $("conn").className = "pill " + cls;
}

function draw() {
  if (!me) return;
  const status = $("me-status");
  const pos = $("me-pos");
  const time = $("me-time");
  status.className = "status";
  $("me-name").textContent = me.name;
  $("me-now").textContent = me.on_air_now || "nobody";
  $("me-slot").textContent = me.slot_seconds ? fmt(me.slot_seconds) : "unlimited";
  pos.dataset.position = me.position === null ? "" : String(me.position);
  if (me.blocked) {
    status.textContent = "Blocked from rejoining until " + clock(me.blocked.until);
    status.classList.add("blocked");
    pos.textContent = "\u2014";
    $("me-time-label").textContent = "Blocked for";
    time.textContent = fmt(me.blocked.left_s - since());
  } else if (me.on_air) {
    status.textContent = "You are on air";
    status.classList.add("live");
    pos.textContent = "on air";
    $("me-time-label").textContent = "Time left";
    time.textContent = typeof me.slot_left_s === "number" ? fmt(me.slot_left_s - since()) : "unlimited";
  } else if (me.position !== null) {
    status.textContent = me.ahead === 0 ? "You are next" :
      "You are in line: " + me.ahead + (me.ahead === 1 ? " streamer" : " streamers") + " before you";
    pos.textContent = "#" + me.position;
    $("me-time-label").textContent = "Estimated wait";
    time.textContent = typeof me.wait_s === "number" ? "~" + fmt(me.wait_s - since()) : "unknown";
  } else {
    status.textContent = "Not in the queue \u2014 start streaming to join";
    pos.textContent = "\u2014";
    $("me-time-label").textContent = "Estimated wait";
    time.textContent = "\u2014";
  }
  const port = me.ingest.port && me.ingest.port !== 1935 ? ":" + me.ingest.port : "";
  const server = "rtmp://" + location.hostname + port + "/" + me.ingest.app;
  if ($("me-server").value !== server) $("me-server").value = server;
  $("me-key-hint").textContent = me.ingest.key_hint + "\u2026";
  drawStream(me.stream);
}

// What the daemon measures of their stream (shown while it is read: on air
// or next), in words a streamer can act on.
const HEALTH_TEXT = {
  live: "Your stream comes through fine",
  stalled: "Nothing arrives from you right now",
  starved: "Your stream arrives too slowly",
  waiting: "Waiting for your stream",
  unknown: "\u2014",
};
const CARD_TEXT = " \u2014 the audience sees a \u201cbe right back\u201d card";

function drawStream(s) {
  $("me-stream-card").hidden = !s;
  if (!s) return;
  const h = $("me-health");
  const unwell = s.state === "stalled" || s.state === "starved";
  h.textContent = (HEALTH_TEXT[s.state] || s.state) + (unwell && me.on_air ? CARD_TEXT : "") +
    (s.state !== "live" && s.for_s ? " (for " + fmt(s.for_s) + ")" : "");
  h.className = "status health-" + s.state;
  h.dataset.state = s.state;
  $("me-kbps").textContent = s.kbps + " kbit/s" + (s.median_kbps ? " (usually " + s.median_kbps + ")" : "");
  $("me-fps").textContent = s.fps + " fps";
  $("me-gop").textContent = typeof s.keyframe_interval_s === "number" ? s.keyframe_interval_s.toFixed(1) + " s" : "\u2014";
  $("me-video").textContent = (s.video_codec || "?") + (s.width ? " " + s.width + "\u00d7" + s.height : "") +
    (s.bframes ? ", B-frames" : "");
  $("me-audio").textContent = s.audio_codec
    ? s.audio_codec + (s.audio_rate ? " " + (s.audio_rate / 1000) + " kHz" : "") +
      (s.audio_channels ? ", " + (s.audio_channels === 1 ? "mono" : s.audio_channels === 2 ? "stereo" : s.audio_channels + " ch") : "") +
      (s.audio ? "" : " (none arriving)")
    : "none";
  $("me-hints").replaceChildren(...(s.hints || []).map(t => {
    const li = document.createElement("li");
    li.textContent = t;
    return li;
  }));
}

async function poll() {
  try {
    const r = await fetch(location.pathname.replace(/\/$/, "") + "/status", { cache: "no-store" });
    if (r.status === 404) {
      $("me-missing").hidden = false;
      setConn("invalid link", "bad");
      return;
    }
    me = await r.json();
    at = performance.now();
    $("me-missing").hidden = true;
    setConn("live", "ok");
    draw();
  } catch (e) {
    setConn("no connection", "bad");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.missing) {
    $("me-missing").hidden = false;
    setConn("invalid link", "bad");
    return;
  }
  $("copy-server").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText($("me-server").value); }
    catch (e) { $("me-server").select(); }
    $("copy-server").textContent = "Copied";
    setTimeout(() => { $("copy-server").textContent = "Copy"; }, 1500);
  });
  poll();
  setInterval(poll, 1000);
  setInterval(draw, 250);
});
