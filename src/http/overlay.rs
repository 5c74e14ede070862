//! HTML overlays for OBS browser sources: transparent background, no
//! reloads (they fetch `/api/status` once a second and redraw).

pub const QUEUE_LIST: &str = r#"<!doctype html>
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
