//! HTML overlays for OBS browser sources: transparent background, no
//! reloads (they fetch `/api/status` once a second and redraw).

pub(crate) const QUEUE_LIST: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>motherstream queue</title>
<style>
  html, body { background: transparent; margin: 0; }
  body { font: 600 28px/1.25 system-ui, sans-serif; color: #fff;
         text-shadow: 0 0 4px #000, 0 0 2px #000; padding: 12px; }
  .label { font-size: 0.6em; text-transform: uppercase; letter-spacing: .12em; opacity: .8; }
  #now { font-size: 1.3em; margin-bottom: .5em; }
  ol { margin: 0; padding-left: 1.4em; }
  .stale { opacity: .4; }
</style></head>
<body>
  <div class="label">Now playing</div>
  <div id="now">&mdash;</div>
  <div class="label">Next up</div>
  <ol id="next"></ol>
<script>
"use strict";
const now = document.getElementById("now");
const next = document.getElementById("next");
let last = "";
async function tick() {
  try {
    const r = await fetch("/api/status", { cache: "no-store" });
    const s = await r.json();
    const names = (s.queue || []).map(e => e.name);
    const key = JSON.stringify(names);
    if (key !== last) {
      last = key;
      now.textContent = names.length ? names[0] : "\u2014";
      next.replaceChildren(...names.slice(1, 6).map(n => {
        const li = document.createElement("li");
        li.textContent = n;
        return li;
      }));
    }
    document.body.classList.remove("stale");
  } catch (e) {
    document.body.classList.add("stale");
  }
}
tick();
setInterval(tick, 1000);
</script>
</body></html>
"#;

/// `/timer`: the on-air slot's remaining time, counting down every quarter
/// second between fetches of `/api/status` (its `slot_left_s` is the truth;
/// the local clock only interpolates, so a skewed clock does not matter).
pub(crate) const TIMER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>motherstream timer</title>
<style>
  html, body { background: transparent; margin: 0; }
  body { font: 700 64px/1.1 system-ui, sans-serif; color: #fff;
         text-shadow: 0 0 6px #000, 0 0 2px #000; padding: 12px;
         font-variant-numeric: tabular-nums; }
  .label { font-size: 0.3em; text-transform: uppercase; letter-spacing: .12em; opacity: .8; }
  #who { font-size: 0.45em; }
  .ending #left { color: #ff5a4f; }
  .idle { visibility: hidden; }
  .stale { opacity: .4; }
</style></head>
<body class="idle">
  <div class="label">Time left</div>
  <div id="left" data-left="">&mdash;</div>
  <div id="who"></div>
<script>
"use strict";
const left = document.getElementById("left");
const who = document.getElementById("who");
let base = null;   // seconds left at the last fetch (null = unlimited / nobody)
let at = 0;        // when that was fetched (performance.now(), ms)
function fmt(s) {
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), x = s % 60;
  const two = n => String(n).padStart(2, "0");
  return h > 0 ? h + ":" + two(m) + ":" + two(x) : m + ":" + two(x);
}
function draw() {
  if (base === null) {
    left.textContent = "\u221e";
    left.dataset.left = "";
    document.body.classList.remove("ending");
    return;
  }
  const s = Math.max(0, Math.ceil(base - (performance.now() - at) / 1000));
  left.textContent = fmt(s);
  left.dataset.left = String(s);
  document.body.classList.toggle("ending", s <= 60);
}
async function tick() {
  try {
    const r = await fetch("/api/status", { cache: "no-store" });
    const st = await r.json();
    const o = st.on_air;
    document.body.classList.toggle("idle", !o);
    who.textContent = o ? o.name : "";
    base = o && typeof o.slot_left_s === "number" ? o.slot_left_s : null;
    at = performance.now();
    draw();
    document.body.classList.remove("stale");
  } catch (e) {
    document.body.classList.add("stale");
  }
}
tick();
setInterval(tick, 1000);
setInterval(draw, 250);
</script>
</body></html>
"#;
