// motherstream moderator console. No framework, no build step: the page
// polls /api/status once a second (answered from the daemon's published
// view, no engine round trip) and calls the admin API with the session
// cookie and its CSRF token. Every action shows the server's answer.
"use strict";

const $ = id => document.getElementById(id);
// The session's CSRF token (null = logged out). Only the login answer
// carries it; it is kept in this tab's sessionStorage (per origin: port
// included, unlike the cookie) so that a reload stays logged in.
const CSRF_KEY = "motherstream-csrf";
let csrf = null;
let st = null;            // last /api/status
let stAt = 0;             // performance.now() of that fetch
let streamers = [];       // last /api/streamers
let lastQueueKey = "";    // queue as last drawn (redraw only on change)
let lastBlockedKey = "";
let lastStreamersKey = "";
let drag = null;          // a reorder in progress (pointer drag)
let pollTimer = null;
let streamersTimer = null;

// ---------------------------------------------------------------- helpers

function fmt(s) {
  if (s === null || s === undefined || !isFinite(s)) return "\u2014";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), x = s % 60;
  const two = n => String(n).padStart(2, "0");
  return h > 0 ? h + ":" + two(m) + ":" + two(x) : m + ":" + two(x);
}

function clock(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of kids) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function say(text, ok) {
  const r = $("result");
  r.textContent = text;
  r.className = "result " + (ok ? "ok" : "bad");
}

/// Minutes typed in a field → seconds, or null when the field is empty.
function minutes(id) {
  const v = $(id).value.trim();
  if (v === "") return null;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? Math.round(n * 60) : NaN;
}

// -------------------------------------------------------------------- API

async function api(path, body, method) {
  const opts = {
    method: method || (body === undefined ? "GET" : "POST"),
    credentials: "same-origin",
    cache: "no-store",
    headers: { "X-CSRF-Token": csrf || "" },
  };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let r, data = {};
  try {
    r = await fetch(path, opts);
  } catch (e) {
    return { ok: false, status: 0, data: { error: "cannot reach the daemon: " + e.message } };
  }
  try { data = await r.json(); } catch (e) { data = { error: "HTTP " + r.status }; }
  if (r.status === 401 && path.startsWith("/api/")) showLogin("Your session has ended; log in again.");
  return { ok: r.ok, status: r.status, data };
}

/// Run an admin action, show its result, refresh what it changed.
async function act(label, path, body, method) {
  const r = await api(path, body === undefined ? {} : body, method);
  if (r.ok) {
    const q = Array.isArray(r.data.queue)
      ? " \u2014 queue: " + (r.data.queue.length ? r.data.queue.join(", ") : "empty")
      : "";
    say(label + ": done" + q, true);
  } else {
    say(label + " failed (" + (r.status || "no answer") + "): " + (r.data.error || "unknown error"), false);
  }
  poll();
  return r;
}

// ------------------------------------------------------------ login/out

function remember(token) {
  csrf = token;
  try {
    if (token) sessionStorage.setItem(CSRF_KEY, token);
    else sessionStorage.removeItem(CSRF_KEY);
  } catch (e) { /* storage disabled: a reload asks to log in again */ }
}

function showLogin(msg) {
  remember(null);
  clearInterval(pollTimer);
  clearInterval(streamersTimer);
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  setConn("logged out", "");
  $("token").focus();
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("token").value = "";
  poll();
  loadStreamers();
  clearInterval(pollTimer);
  clearInterval(streamersTimer);
  pollTimer = setInterval(poll, 1000);
  // The registry list is an engine round trip: refreshed after changes
  // and every 15 s, not every second.
  streamersTimer = setInterval(loadStreamers, 15000);
}

async function login(ev) {
  ev.preventDefault();
  const r = await fetch("/admin/login", {
    method: "POST", credentials: "same-origin", cache: "no-store",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("token").value.trim() }),
  }).catch(e => null);
  if (!r) { $("login-error").textContent = "cannot reach the daemon"; return; }
  const data = await r.json().catch(() => ({}));
  if (!r.ok || !data.csrf) {
    $("login-error").textContent = data.error || ("login failed: HTTP " + r.status);
    return;
  }
  remember(data.csrf);
  showApp();
  say("Logged in.", true);
}

async function logout() {
  await api("/admin/logout", {});
  showLogin("Logged out.");
}

function setConn(text, cls) {
  const c = $("conn");
  c.textContent = text;
  c.className = "pill " + cls;
}

// ------------------------------------------------------------------ poll

async function poll() {
  try {
    const r = await fetch("/api/status", { cache: "no-store" });
    st = await r.json();
    stAt = performance.now();
    setConn("live", "ok");
    draw();
  } catch (e) {
    setConn("no connection", "bad");
  }
}

async function loadStreamers() {
  const r = await api("/api/streamers");
  if (r.ok && Array.isArray(r.data.streamers)) {
    streamers = r.data.streamers;
    drawStreamers();
  }
}

function elapsed() { return (performance.now() - stAt) / 1000; }

function draw() {
  if (!st) return;
  const o = st.on_air;
  $("onair-name").textContent = o ? o.name : "nobody";
  drawClocks();
  if (o) {
    const rl = o.relay || {};
    const cls = rl.state === "running" ? "good" : (rl.state === "failed" ? "badc" : "meh");
    const relay = $("relay");
    relay.textContent = (rl.state || "?") + (rl.pid ? " (pid " + rl.pid + ")" : "") +
      (rl.restarts ? ", " + rl.restarts + " restarts" : "") + " \u00b7 " + (st.relay ? st.relay.mode : "");
    relay.className = cls;
  } else {
    $("relay").textContent = "idle (slate)" + (st.relay ? " \u00b7 " + st.relay.mode : "");
    $("relay").className = "";
  }
  $("last-cut").textContent = (st.relay && st.relay.last_cut) || "\u2014";
  // [recording] on: what is being recorded and the latest finished sets.
  const rec = st.recordings;
  $("rec-wrap").hidden = !rec;
  if (rec) {
    const recent = (rec.recent || []).slice(-5).reverse().map(function (r) {
      return r.file + (r.duration_s != null ? " (" + Math.round(r.duration_s) + " s)" : "");
    });
    $("recordings").textContent = (rec.paused ? "paused: low disk space \u00b7 " : "") +
      (rec.recording ? "recording " + rec.recording.name + " \u00b7 " : "") +
      (recent.length ? recent.join(", ") : "none yet");
  }
  const obs = st.obs || {};
  $("obs").textContent = !obs.enabled ? "not used" : (obs.connected ? "connected" : "not connected") +
    (obs.detail ? " \u00b7 " + obs.detail : "");
  $("obs").className = !obs.enabled ? "" : (obs.connected ? "good" : "badc");
  $("skip").disabled = $("kick-onair").disabled = !o;

  // Settings (not while someone is typing in them).
  if (document.activeElement !== $("slot-min")) {
    $("slot-min").value = st.slot_seconds ? String(Math.round(st.slot_seconds / 60)) : "0";
  }
  $("rejoin").checked = st.rejoin_block_seconds > 0;
  $("rejoin-secs").textContent = st.rejoin_block_seconds > 0
    ? "for " + fmt(st.rejoin_block_seconds) : "off";

  drawQueue();
  drawBlocked();
}

/// The on-air clocks tick between polls (the status is the truth; the
/// local clock only interpolates).
function drawClocks() {
  if (!st) return;
  const o = st.on_air;
  const left = $("onair-left");
  if (!o) {
    $("onair-for").textContent = "\u2014";
    left.textContent = "\u2014";
    left.dataset.left = "";
    return;
  }
  $("onair-for").textContent = o.since ? fmt(o.on_air_s + elapsed()) : "starting";
  if (typeof o.slot_left_s === "number") {
    const s = Math.max(0, o.slot_left_s - elapsed());
    left.textContent = fmt(s);
    left.dataset.left = String(Math.ceil(s));
    left.classList.toggle("ending", s <= 60);
  } else {
    left.textContent = "unlimited";
    left.dataset.left = "";
    left.classList.remove("ending");
  }
}

// ----------------------------------------------------------------- queue

function drawQueue() {
  const q = st.queue || [];
  const key = JSON.stringify(q.map(e => e.name));
  $("queue-count").textContent = q.length ? "(" + q.length + ")" : "";
  $("queue-empty").hidden = q.length > 0;
  if (key !== lastQueueKey && !drag) {
    lastQueueKey = key;
    $("queue").replaceChildren(...q.map((e, i) => queueItem(e, i, q.length)));
  }
  drawHealth(q);
}

// How each read stream comes through (splice mode: the on-air and the next
// streamer), updated at every poll without redrawing the list.
function drawHealth(q) {
  for (const li of $("queue").children) {
    const e = q.find(x => x.name === li.dataset.name);
    const span = li.querySelector(".health");
    if (!span) continue;
    const h = e && e.health;
    span.hidden = !h;
    if (!h) { span.dataset.state = ""; continue; }
    span.dataset.state = h.state;
    const key = typeof h.keyframe_interval_s === "number" ? ", keyframe " + h.keyframe_interval_s.toFixed(1) + " s" : "";
    span.querySelector(".h-state").textContent = h.state + (h.state !== "live" ? " for " + fmt(h.for_s) + " (since " + clock(h.since) + ")" : "");
    span.querySelector(".h-figs").textContent = h.kbps + " kbit/s, " + h.fps + " fps" + key;
    span.querySelector(".h-enc").textContent = (h.video_codec || "?") + (h.width ? " " + h.width + "\u00d7" + h.height : "") +
      (h.bframes ? ", B-frames" : "") + " \u00b7 " + (h.audio_codec || "no audio") +
      (h.audio_rate ? " " + h.audio_rate / 1000 + " kHz" : "") + (h.audio_channels ? "/" + h.audio_channels + "ch" : "");
    span.title = (h.hints || []).join("\n");
  }
}

function queueItem(e, i, n) {
  const name = e.name;
  const li = el("li", { class: i === 0 ? "live" : "", dataset: { name, index: String(i) } },
    el("span", { class: "grip", text: "\u2630", title: "Drag to reorder", "aria-hidden": "true",
                 onpointerdown: ev => dragStart(ev, li) }),
    el("span", { class: "pos", text: i === 0 ? "\u25b6" : String(i) }),
    el("span", { class: "name", text: name }),
    el("span", { class: "meta", text: i === 0 ? "on air" : "joined " + clock(e.joined_at) }),
    el("span", { class: "health", hidden: true },
      el("span", { class: "h-state" }), el("span", { class: "h-figs" }), el("span", { class: "h-enc" })),
    el("span", { class: "acts" },
      el("button", { type: "button", class: "icon", text: "\u2191", "aria-label": "Move " + name + " up",
                     onclick: () => move(name, i - 1) }),
      el("button", { type: "button", class: "icon", text: "\u2193", "aria-label": "Move " + name + " down",
                     onclick: () => move(name, i + 1) }),
      i === 0 ? null : el("button", { type: "button", text: "On air", "aria-label": "Put " + name + " on air",
                     onclick: () => move(name, 0) }),
      el("button", { type: "button", class: "danger", text: "Kick", "aria-label": "Kick " + name,
                     onclick: () => kick(name) })));
  const [up, down] = li.querySelectorAll("button.icon");
  up.disabled = i === 0;
  down.disabled = i === n - 1;
  return li;
}

function move(name, position) {
  if (position < 0) return;
  return act("Move " + name + (position === 0 ? " on air" : " to " + position), "/api/move", { name, position });
}

function kick(name) {
  const secs = minutes("kick-min");
  if (Number.isNaN(secs)) return say("Kick: the minutes must be a number \u2265 0", false);
  const body = name === null ? {} : { name };
  if (secs !== null) body.seconds = secs;
  return act("Kick " + (name || "on air") + (secs !== null ? " (" + fmt(secs) + ")" : ""), "/api/kick", body);
}

// Reorder by dragging the grip: pointer events, so it works with a mouse,
// a pen and a finger alike (the up/down buttons are the keyboard way).
function dragStart(ev, li) {
  if (ev.button !== undefined && ev.button !== 0) return;
  ev.preventDefault();
  const items = [...$("queue").children];
  drag = {
    li, from: items.indexOf(li), to: items.indexOf(li), y0: ev.clientY,
    mids: items.map(x => { const b = x.getBoundingClientRect(); return b.top + b.height / 2; }),
    items, pointer: ev.pointerId,
  };
  li.classList.add("dragging");
  const grip = ev.currentTarget;
  try { grip.setPointerCapture(ev.pointerId); } catch (e) { /* synthetic pointers */ }
  grip.addEventListener("pointermove", dragMove);
  grip.addEventListener("pointerup", dragEnd, { once: true });
  grip.addEventListener("pointercancel", dragCancel, { once: true });
}

function dragMove(ev) {
  if (!drag) return;
  const dy = ev.clientY - drag.y0;
  drag.li.style.transform = "translateY(" + dy + "px)";
  const y = drag.mids[drag.from] + dy;
  let to = 0;
  drag.mids.forEach((m, i) => { if (i !== drag.from && y > m) to = i < drag.from ? i + 1 : i; });
  if (y < drag.mids[0]) to = 0;
  drag.to = Math.max(0, Math.min(drag.items.length - 1, to));
  drag.items.forEach((x, i) => {
    x.classList.toggle("drop-before", i === drag.to && drag.to < drag.from);
    x.classList.toggle("drop-after", i === drag.to && drag.to > drag.from);
  });
}

function dragStop(ev) {
  const d = drag;
  drag = null;
  const grip = ev.currentTarget;
  grip.removeEventListener("pointermove", dragMove);
  d.items.forEach(x => x.classList.remove("drop-before", "drop-after", "dragging"));
  d.li.style.transform = "";
  lastQueueKey = "";
  return d;
}

function dragEnd(ev) {
  if (!drag) return;
  const d = dragStop(ev);
  if (d.to !== d.from) move(d.li.dataset.name, d.to);
  else drawQueue();
}

function dragCancel(ev) {
  if (drag) { dragStop(ev); drawQueue(); }
}

// --------------------------------------------------------------- blocked

function drawBlocked() {
  const b = st.blocked || [];
  const key = JSON.stringify(b.map(x => [x.name, x.until]));
  $("blocked-empty").hidden = b.length > 0;
  if (key === lastBlockedKey) return;
  lastBlockedKey = key;
  $("blocked").replaceChildren(...b.map(x => el("li", { dataset: { name: x.name } },
    el("span", { class: "name", text: x.name }),
    el("span", { class: "meta", text: "until " + clock(x.until) }),
    el("button", { type: "button", text: "Unblock", "aria-label": "Unblock " + x.name,
                   onclick: () => act("Unblock " + x.name, "/api/unblock", { name: x.name }) }))));
}

// ------------------------------------------------------------- streamers

function ingestServer() {
  const d = document.body.dataset;
  const port = d.rtmpPort && d.rtmpPort !== "1935" && d.rtmpPort !== "0" ? ":" + d.rtmpPort : "";
  return "rtmp://" + location.hostname + port + "/" + (d.ingestApp || "live");
}

function drawStreamers() {
  const key = JSON.stringify(streamers);
  $("streamers-empty").hidden = streamers.length > 0;
  if (key === lastStreamersKey) return;
  lastStreamersKey = key;
  $("streamers").replaceChildren(...streamers.map(s => {
    const slot = el("input", { type: "number", min: "0", step: "1", inputmode: "numeric",
      placeholder: "default", "aria-label": "Slot minutes for " + s.name,
      value: s.slot_seconds === null || s.slot_seconds === undefined ? "" : String(Math.round(s.slot_seconds / 60)) });
    const state = s.queued === 0 ? "on air" : (s.queued !== null && s.queued !== undefined ? "#" + s.queued + " in queue" :
      (s.blocked_until ? "blocked until " + clock(s.blocked_until) : ""));
    return el("li", { dataset: { name: s.name } },
      el("span", { class: "name", text: s.name }),
      el("span", { class: "meta", text: state }),
      el("span", { class: "acts" },
        slot,
        el("button", { type: "button", text: "Set slot", onclick: () => {
          const v = slot.value.trim();
          const secs = v === "" ? null : Math.round(Number(v) * 60);
          if (Number.isNaN(secs) || secs < 0) return say("Slot: minutes must be a number \u2265 0", false);
          act("Slot of " + s.name + (secs === null ? ": default" : ": " + fmt(secs)), "/api/streamers/slot",
              { name: s.name, slot_seconds: secs }).then(loadStreamers);
        } }),
        el("button", { type: "button", text: "Page link", onclick: () => pageLink(s.name, false) }),
        armed(el("button", { type: "button", text: "New link", dataset: { confirm: "Replace " + s.name + "'s page link?" } }),
          () => pageLink(s.name, true)),
        armed(el("button", { type: "button", text: "Rotate key", class: "warn",
                             dataset: { confirm: "New key for " + s.name + "? The old one stops working." } }),
          () => rotateKey(s.name)),
        armed(el("button", { type: "button", text: "Remove", class: "danger",
                             dataset: { confirm: "Really remove " + s.name + "?" } }),
          () => act("Remove " + s.name, "/api/streamers", { name: s.name }, "DELETE").then(loadStreamers))));
  }));
}

function showSecret(title, key, link) {
  $("secret-title").textContent = title;
  const server = ingestServer();
  $("secret-server").value = server;
  $("secret-key").value = key || "";
  $("secret-url").value = key ? server + "/" + key : "";
  $("secret-url").parentElement.hidden = $("secret-key").parentElement.hidden = !key;
  document.querySelector('label[for="secret-url"]').hidden = !key;
  document.querySelector('label[for="secret-key"]').hidden = !key;
  document.querySelector('label[for="secret-server"]').hidden = !key;
  $("secret-server").parentElement.hidden = !key;
  $("secret-link-box").hidden = !link;
  $("secret-link").value = link ? location.origin + "/me/" + link : "";
  $("secret").hidden = false;
  $("secret").scrollIntoView({ block: "nearest" });
}

async function addStreamer(ev) {
  ev.preventDefault();
  const name = $("add-name").value.trim();
  const secs = minutes("add-slot");
  if (Number.isNaN(secs)) return say("Add: slot minutes must be a number \u2265 0", false);
  const body = { name };
  if (secs !== null) body.slot_seconds = secs;
  const r = await act("Add " + name, "/api/streamers", body);
  if (r.ok) {
    $("add-name").value = "";
    $("add-slot").value = "";
    showSecret("New stream key for " + r.data.name + ".", r.data.key, r.data.link_token);
    loadStreamers();
  }
}

async function rotateKey(name) {
  const r = await act("New key for " + name, "/api/streamers/rotate-key", { name });
  if (r.ok) showSecret("New stream key for " + r.data.name + ".", r.data.key, null);
  loadStreamers();
}

async function pageLink(name, rotate) {
  const r = await act((rotate ? "New page link for " : "Page link of ") + name, "/api/streamers/link", { name, rotate });
  if (r.ok) {
    showSecret(name + "'s page." , null, r.data.link_token);
    $("secret-title").textContent = name + "'s page:";
    loadStreamers();
  }
}

// A destructive button asks once more: the first press arms it for 5 s
// (its label asks the question), the second press does it. No modal
// dialog, so it works the same with a keyboard, a finger and a test.
function armed(button, run) {
  const label = button.textContent;
  let timer = null;
  button.addEventListener("click", () => {
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = button.dataset.confirm + " Press again";
      timer = setTimeout(() => { button.classList.remove("armed"); button.textContent = label; }, 5000);
      return;
    }
    clearTimeout(timer);
    button.classList.remove("armed");
    button.textContent = label;
    run();
  });
  return button;
}

// ------------------------------------------------------------------ wire

function wire() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("skip").addEventListener("click", () => act("Skip", "/api/skip", {}));
  $("kick-onair").addEventListener("click", () => kick(null));
  document.querySelectorAll("[data-extend]").forEach(b => b.addEventListener("click", () => {
    const s = Number(b.dataset.extend);
    act((s > 0 ? "Extend by " : "Shorten by ") + fmt(Math.abs(s)), "/api/slot/extend", { seconds: s });
  }));
  $("left-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const secs = minutes("left-min");
    if (secs === null || Number.isNaN(secs)) return say("Time left: type minutes", false);
    act("Time left " + fmt(secs), "/api/slot/extend", { left: secs });
  });
  $("slot-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const secs = minutes("slot-min");
    if (secs === null || Number.isNaN(secs)) return say("Default slot: type minutes (0 = unlimited)", false);
    $("slot-min").blur();
    act("Default slot " + (secs ? fmt(secs) : "unlimited"), "/api/slot/default", { seconds: secs });
  });
  $("slot-config").addEventListener("click", () =>
    act("Default slot from the config", "/api/slot/default", { seconds: null }));
  $("rejoin").addEventListener("change", ev =>
    act("Rejoin block " + (ev.target.checked ? "on" : "off"), "/api/rejoin-block", { enabled: ev.target.checked }));
  armed($("clear"), () => act("Clear the queue", "/clear-queue", {}));
  $("block-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const name = $("block-name").value.trim();
    const secs = minutes("kick-min");
    if (Number.isNaN(secs)) return say("Block: the minutes must be a number \u2265 0", false);
    const seconds = secs || 600;
    act("Block " + name + " for " + fmt(seconds), "/api/block", { name, seconds })
      .then(r => { if (r.ok) $("block-name").value = ""; });
  });
  $("add-form").addEventListener("submit", addStreamer);
  $("secret-done").addEventListener("click", () => {
    $("secret").hidden = true;
    ["secret-url", "secret-server", "secret-key", "secret-link"].forEach(id => { $(id).value = ""; });
  });
  document.querySelectorAll("[data-copy]").forEach(b => b.addEventListener("click", async () => {
    const input = $(b.dataset.copy);
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (e) {
      // Plain HTTP (no secure context): select it for Ctrl+C instead.
      input.select();
      document.execCommand && document.execCommand("copy");
    }
    b.textContent = "Copied";
    setTimeout(() => { b.textContent = "Copy"; }, 1500);
  }));
  setInterval(drawClocks, 250);
}

async function start() {
  wire();
  // Logged in already (a reload of this tab)? The token this tab kept and
  // the cookie must both still be good; the daemon never hands the token
  // out again (the cookie alone reaches other servers on this host).
  let kept = null;
  try { kept = sessionStorage.getItem(CSRF_KEY); } catch (e) { kept = null; }
  if (!kept) return showLogin("");
  const r = await fetch("/admin/session", {
    credentials: "same-origin", cache: "no-store", headers: { "X-CSRF-Token": kept },
  }).catch(() => null);
  if (r && r.ok) { remember(kept); showApp(); } else showLogin("");
}

document.addEventListener("DOMContentLoaded", start);
