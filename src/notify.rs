//! Webhook notifications: one thread per `[[notify]]` entry, each fed by
//! its own bounded queue, so a receiver that hangs delays only its own
//! messages, never a switch and never another webhook. Delivery is a thin
//! blocking shell (ureq) around pure parts: message formatting, the event
//! filter and the retry policy.
//!
//! Webhook URLs are secrets (a Discord URL is a write token): they are never
//! logged; logs and metrics name the entry (`name`, else `notify-<n>`).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::json;

use crate::config::{NotifyConfig, NotifyFormat};
use crate::events::{Event, EventKind};
use crate::metrics::Metrics;

/// Backoff between attempts: 0.5 s doubling, at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A `Retry-After` longer than this is cut to it (a webhook that asks for
/// an hour would hold its queue for an hour).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// At shutdown, what is still queued gets one attempt each within this.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(2);
/// Dropped events are reported at most this often per notifier.
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// The engine's end of one notifier: offering an event never blocks.
pub struct Sink {
    name: Arc<str>,
    wants: Filter,
    tx: Sender<Arc<Event>>,
    metrics: Arc<Metrics>,
    dropped_since_warn: u64,
    last_warn: Option<Instant>,
}

impl Sink {
    pub(crate) fn offer(&mut self, ev: &Arc<Event>) {
        if !self.wants.wants(ev) {
            return;
        }
        match self.tx.try_send(ev.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.notification(&self.name, "dropped");
                self.dropped_since_warn += 1;
                let now = Instant::now();
                if self
                    .last_warn
                    .map_or(true, |t| now.duration_since(t) >= DROP_WARN_EVERY)
                {
                    log::warn!(
                        "notifier {}: its queue is full (the webhook is slow or down); dropped {} event(s)",
                        self.name,
                        self.dropped_since_warn
                    );
                    self.dropped_since_warn = 0;
                    self.last_warn = Some(now);
                }
            }
            // The thread is gone (it only ends at shutdown).
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Which event kinds an entry wants (`events = []`: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter(Vec<EventKind>);

impl Filter {
    pub(crate) fn new(kinds: &[EventKind]) -> Filter {
        Filter(kinds.to_vec())
    }

    pub(crate) fn wants(&self, ev: &Event) -> bool {
        // One end of a stream is how a streamer leaves (their hook comes a
        // moment later): a failure is worth a message from the second in a
        // row on, and so is the recovery from it.
        let repeated = match ev {
            Event::RelayFailed { failures, .. } | Event::RelayRecovered { failures, .. } => {
                *failures >= 2
            }
            _ => true,
        };
        repeated && (self.0.is_empty() || self.0.contains(&ev.kind()))
    }
}

/// The notifier threads, joined at shutdown.
pub struct Notifiers {
    threads: Vec<JoinHandle<()>>,
    stop: Option<Sender<()>>,
    /// Each thread says here that it has ended.
    ended: Receiver<()>,
}

/// Start one thread per entry. An entry whose URL cannot be read is
/// skipped with an error (the daemon runs without it).
pub fn start(entries: &[NotifyConfig], metrics: &Arc<Metrics>) -> (Vec<Sink>, Notifiers) {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let (ended_tx, ended_rx) = crossbeam_channel::unbounded::<()>();
    let mut sinks = Vec::new();
    let mut threads = Vec::new();
    for (i, cfg) in entries.iter().enumerate() {
        let name: Arc<str> = cfg.display_name(i).into();
        let url = match cfg.resolve_url() {
            Ok(u) if u.starts_with("http://") || u.starts_with("https://") => u,
            Ok(_) => {
                log::error!(
                    "notifier {name} is off: the URL in its url_file must start with http:// or https://"
                );
                continue;
            }
            Err(e) => {
                log::error!("notifier {name} is off: {e}");
                continue;
            }
        };
        let agent = match agent(cfg) {
            Ok(a) => a,
            Err(e) => {
                log::error!("notifier {name} is off: {e}");
                continue;
            }
        };
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_size);
        let worker = Worker {
            name: name.clone(),
            url,
            format: cfg.format,
            retries: cfg.retries,
            timeout: Duration::from_millis(cfg.timeout_ms),
            agent,
            metrics: metrics.clone(),
            stop: stop_rx.clone(),
            deadline: None,
        };
        let ended = ended_tx.clone();
        match std::thread::Builder::new()
            .name(format!("notify-{}", i + 1))
            .spawn(move || {
                worker.run(rx);
                let _ = ended.send(());
            }) {
            Ok(t) => threads.push(t),
            Err(e) => {
                log::error!("notifier {name} is off: cannot start its thread: {e}");
                continue;
            }
        }
        log::info!(
            "notifier {name}: {} messages for {}",
            match cfg.format {
                NotifyFormat::Json => "JSON",
                NotifyFormat::Discord => "Discord",
            },
            if cfg.events.is_empty() {
                "every event".to_string()
            } else {
                let names: Vec<&str> = cfg.events.iter().map(|k| k.as_str()).collect();
                names.join(", ")
            }
        );
        sinks.push(Sink {
            name,
            wants: Filter::new(&cfg.events),
            tx,
            metrics: metrics.clone(),
            dropped_since_warn: 0,
            last_warn: None,
        });
    }
    (
        sinks,
        Notifiers {
            threads,
            stop: Some(stop_tx),
            ended: ended_rx,
        },
    )
}

impl Notifiers {
    /// Stop retrying, send what is queued within a short budget, join.
    /// Call after the engine (which holds the sinks) has ended.
    /// A thread stuck in a request to a webhook that does not answer is
    /// not waited for past the budget (its request times out on its own;
    /// the process exits).
    pub fn shutdown(mut self) {
        self.stop.take();
        let deadline = Instant::now() + SHUTDOWN_BUDGET + Duration::from_millis(500);
        let mut ended = 0;
        while ended < self.threads.len() {
            match self.ended.recv_deadline(deadline) {
                Ok(()) => ended += 1,
                Err(_) => break,
            }
        }
        if ended < self.threads.len() {
            log::warn!(
                "{} notifier(s) still waiting on their webhook at shutdown; not waiting for them",
                self.threads.len() - ended
            );
            return;
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn agent(cfg: &NotifyConfig) -> Result<ureq::Agent, String> {
    let tls = native_tls::TlsConnector::new().map_err(|e| format!("no TLS: {e}"))?;
    Ok(ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_millis(cfg.connect_timeout_ms))
        .timeout(Duration::from_millis(cfg.timeout_ms))
        // A redirect could lead a secret-bearing POST anywhere.
        .redirects(0)
        .user_agent(concat!("motherstream/", env!("CARGO_PKG_VERSION")))
        .tls_connector(Arc::new(tls))
        .build())
}

struct Worker {
    name: Arc<str>,
    url: String,
    format: NotifyFormat,
    retries: u32,
    timeout: Duration,
    agent: ureq::Agent,
    metrics: Arc<Metrics>,
    stop: Receiver<()>,
    /// Set once shutdown began: nothing is attempted after it.
    deadline: Option<Instant>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Arc<Event>>) {
        let mut unsent = 0u64;
        loop {
            let ev = if self.deadline.is_none() {
                crossbeam_channel::select! {
                    recv(rx) -> ev => ev.ok(),
                    recv(self.stop) -> _ => {
                        self.deadline = Some(Instant::now() + SHUTDOWN_BUDGET);
                        continue;
                    }
                }
            } else {
                rx.try_recv().ok()
            };
            let Some(ev) = ev else { break };
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                unsent += 1;
                continue;
            }
            let body = format_message(&ev, self.format, crate::clock::unix_ms() / 1000);
            if self.deliver(&body, ev.kind().as_str()) {
                self.metrics.notification(&self.name, "sent");
            } else {
                self.metrics.notification(&self.name, "failed");
            }
        }
        if unsent > 0 {
            log::warn!(
                "notifier {}: {unsent} event(s) not sent at shutdown",
                self.name
            );
        }
    }

    /// Whether the webhook took it; retries per [`next_attempt`].
    fn deliver(&mut self, body: &str, kind: &str) -> bool {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self
                .agent
                .post(&self.url)
                .set("Content-Type", "application/json");
            if let Some(d) = self.deadline {
                let left = d.saturating_duration_since(Instant::now());
                req = req.timeout(left.min(self.timeout).max(Duration::from_millis(1)));
            }
            let outcome = match req.send_string(body) {
                Ok(_) => Outcome::Delivered,
                Err(ureq::Error::Status(code, resp)) => Outcome::Status {
                    code,
                    retry_after: resp.header("Retry-After").and_then(parse_retry_after),
                },
                // The transport error's text names the URL: log its kind only.
                Err(ureq::Error::Transport(t)) => Outcome::Transport(t.kind().to_string()),
            };
            let next = if self.deadline.is_some() {
                None
            } else {
                next_attempt(&outcome, attempt, self.retries)
            };
            match (&outcome, next) {
                (Outcome::Delivered, _) => return true,
                (_, Some(wait)) => {
                    log::debug!(
                        "notifier {}: {kind} not delivered ({}); attempt {} in {:.1} s",
                        self.name,
                        outcome.describe(),
                        attempt + 1,
                        wait.as_secs_f64()
                    );
                    match self.stop.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        // Shutting down: no more waiting for this one.
                        _ => {
                            self.deadline = Some(Instant::now() + SHUTDOWN_BUDGET);
                            return false;
                        }
                    }
                }
                (_, None) => {
                    log::warn!(
                        "notifier {}: {kind} not delivered after {attempt} attempt(s): {}",
                        self.name,
                        outcome.describe()
                    );
                    return false;
                }
            }
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// Connection refused, DNS, timeout, TLS...
    Transport(String),
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Delivered => "delivered".into(),
            Outcome::Status { code, .. } => format!("HTTP {code}"),
            Outcome::Transport(k) => k.clone(),
        }
    }
}

/// After attempt number `attempt` (from 1) came to `o`: wait this long and
/// try again, or stop (None). 5xx, 429 and transport errors are retried,
/// `retries` times at most; other 4xx never (the request itself is wrong).
/// 429 waits for its `Retry-After` when it has one.
pub(crate) fn next_attempt(o: &Outcome, attempt: u32, retries: u32) -> Option<Duration> {
    if attempt > retries {
        return None;
    }
    let backoff = || {
        let ms = 500u64.saturating_mul(1u64 << (attempt - 1).min(16));
        Duration::from_millis(ms).min(MAX_BACKOFF)
    };
    match o {
        Outcome::Delivered => None,
        Outcome::Status {
            code: 429,
            retry_after,
        } => Some(retry_after.map_or_else(backoff, |d| d.min(MAX_RETRY_AFTER))),
        Outcome::Status { code, .. } if *code >= 500 => Some(backoff()),
        Outcome::Status { .. } => None,
        Outcome::Transport(_) => Some(backoff()),
    }
}

/// `Retry-After` as delay seconds ("3", or Discord's "0.75") or as an
/// HTTP-date (the wait until then; a date already past is no wait).
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    retry_after_at(v, std::time::SystemTime::now())
}

/// [`parse_retry_after`] at the time `now`.
fn retry_after_at(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(86_400.0)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The body POSTed for `ev`.
pub(crate) fn format_message(ev: &Event, format: NotifyFormat, now_s: u64) -> String {
    match format {
        NotifyFormat::Json => json_message(ev, now_s).to_string(),
        NotifyFormat::Discord => json!({
            "content": discord_text(ev),
            // A streamer named "@everyone" pings nobody.
            "allowed_mentions": { "parse": [] },
        })
        .to_string(),
    }
}

fn json_message(ev: &Event, now_s: u64) -> serde_json::Value {
    let mut v = match ev {
        Event::OnAir {
            name,
            slot_seconds,
            next,
            switch_latency,
        } => json!({
            "name": name,
            "slot_seconds": slot_seconds,
            "next": next,
            "switch_ms": switch_latency.as_millis() as u64,
        }),
        Event::OffAir { name, reason } => json!({"name": name, "reason": reason.as_str()}),
        Event::Joined { name, position } => json!({"name": name, "position": position}),
        Event::Kicked { name, seconds } | Event::Blocked { name, seconds } => {
            json!({"name": name, "blocked_seconds": seconds})
        }
        Event::Left { name }
        | Event::Skipped { name }
        | Event::SlotEnded { name }
        | Event::GaveUp { name } => json!({ "name": name }),
        Event::RelayFailed {
            name,
            why,
            failures,
        } => json!({"name": name, "why": why, "failures": failures}),
        Event::RelayRecovered { name, failures } => json!({"name": name, "failures": failures}),
        Event::Unstable {
            name,
            state,
            detail,
            on_air,
        } => json!({"name": name, "state": state, "detail": detail, "on_air": on_air}),
        Event::Back {
            name,
            after,
            on_air,
        } => json!({"name": name, "after_s": after.as_secs_f64(), "on_air": on_air}),
        Event::OutputFailed { detail } => json!({ "detail": detail }),
        Event::ObsLost { reason } => json!({ "reason": reason }),
        Event::OutputRecovered | Event::ObsBack => json!({}),
    };
    v["event"] = json!(ev.kind().as_str());
    v["at"] = json!(now_s);
    v
}

/// Discord renders Markdown: a name must show as typed.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\*_~`|>#[]()<@:-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn duration_words(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        s if s % 60 == 0 && s < 3600 => format!("{} min", s / 60),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

pub(crate) fn discord_text(ev: &Event) -> String {
    match ev {
        Event::OnAir {
            name,
            slot_seconds,
            next,
            ..
        } => format!(
            "🔴 **{}** is on air now ({}). Next up: {}.",
            md(name),
            slot_seconds.map_or("no time limit".to_string(), |s| format!(
                "{} slot",
                duration_words(s)
            )),
            next.as_deref()
                .map_or("nobody yet".to_string(), |n| format!("**{}**", md(n)))
        ),
        Event::OffAir { name, reason } => {
            format!("**{}** is off air ({}).", md(name), reason.describe())
        }
        Event::Joined { name, position } => match position {
            0 => format!("**{}** joined and goes on air.", md(name)),
            p => format!("**{}** joined the queue at position {}.", md(name), p + 1),
        },
        Event::Left { name } => format!("**{}** left the queue.", md(name)),
        Event::Kicked { name, seconds } => format!(
            "**{}** was kicked by a moderator{}.",
            md(name),
            seconds.map_or(String::new(), |s| format!(
                " and may rejoin in {}",
                duration_words(s)
            ))
        ),
        Event::Blocked { name, seconds } => format!(
            "**{}** was blocked by a moderator{}.",
            md(name),
            seconds.map_or(String::new(), |s| format!(" for {}", duration_words(s)))
        ),
        Event::Skipped { name } => format!("**{}** was skipped by a moderator.", md(name)),
        Event::SlotEnded { name } => format!("**{}**'s slot is over.", md(name)),
        Event::GaveUp { name } => format!(
            "**{}**'s stream is not coming through; the next streamer goes on air.",
            md(name)
        ),
        Event::Unstable {
            name,
            state,
            detail,
            on_air,
        } => format!(
            "⚠️ **{}**'s stream {} ({}){}.",
            md(name),
            if *state == "starved" {
                "is starved"
            } else {
                "stalled"
            },
            md(detail),
            if *on_air {
                "; the be-right-back card is on"
            } else {
                ""
            }
        ),
        Event::Back { name, after, .. } => format!(
            "✅ **{}**'s stream is back after {}.",
            md(name),
            duration_words(after.as_secs())
        ),
        Event::RelayFailed {
            name,
            why,
            failures,
        } => format!(
            "⚠️ **{}**'s stream failed {failures} times in a row ({}); reading it again.",
            md(name),
            md(why)
        ),
        Event::RelayRecovered { name, .. } => {
            format!("✅ **{}**'s stream works again.", md(name))
        }
        Event::OutputFailed { detail } => format!(
            "⚠️ The channel's output is down ({}); restarting it.",
            md(detail)
        ),
        Event::OutputRecovered => "✅ The channel's output is back.".to_string(),
        Event::ObsLost { reason } => format!("⚠️ Lost OBS ({}).", md(reason)),
        Event::ObsBack => "✅ OBS is connected again.".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OffAirReason;

    fn on_air() -> Event {
        Event::OnAir {
            name: "DJ *Star*".into(),
            slot_seconds: Some(1800),
            next: Some("@everyone".into()),
            switch_latency: Duration::from_millis(420),
        }
    }

    #[test]
    fn discord_names_streamer_slot_and_next_without_markdown_or_pings() {
        let body: serde_json::Value =
            serde_json::from_str(&format_message(&on_air(), NotifyFormat::Discord, 7)).unwrap();
        let text = body["content"].as_str().unwrap();
        assert_eq!(
            text,
            "🔴 **DJ \\*Star\\*** is on air now (30 min slot). Next up: **\\@everyone**."
        );
        assert_eq!(body["allowed_mentions"]["parse"], json!([]));
        let unlimited = Event::OnAir {
            name: "a".into(),
            slot_seconds: None,
            next: None,
            switch_latency: Duration::ZERO,
        };
        assert_eq!(
            discord_text(&unlimited),
            "🔴 **a** is on air now (no time limit). Next up: nobody yet."
        );
        assert_eq!(
            discord_text(&Event::OffAir {
                name: "a".into(),
                reason: OffAirReason::SlotEnded
            }),
            "**a** is off air (slot ended)."
        );
        assert_eq!(duration_words(90), "1 min 30 s");
        assert_eq!(duration_words(7260), "2 h 1 min");
    }

    #[test]
    fn json_carries_kind_time_and_fields() {
        let v: serde_json::Value =
            serde_json::from_str(&format_message(&on_air(), NotifyFormat::Json, 1234)).unwrap();
        assert_eq!(v["event"], "on_air");
        assert_eq!(v["at"], 1234);
        assert_eq!(v["name"], "DJ *Star*");
        assert_eq!(v["slot_seconds"], 1800);
        assert_eq!(v["next"], "@everyone");
        assert_eq!(v["switch_ms"], 420);
        let off: serde_json::Value = serde_json::from_str(&format_message(
            &Event::OffAir {
                name: "b".into(),
                reason: OffAirReason::Kicked,
            },
            NotifyFormat::Json,
            0,
        ))
        .unwrap();
        assert_eq!(
            off,
            json!({"event": "off_air", "name": "b", "reason": "kicked", "at": 0})
        );
    }

    #[test]
    fn retry_policy() {
        let st = |code| Outcome::Status {
            code,
            retry_after: None,
        };
        assert_eq!(next_attempt(&Outcome::Delivered, 1, 4), None);
        assert_eq!(
            next_attempt(&st(500), 1, 4),
            Some(Duration::from_millis(500))
        );
        assert_eq!(next_attempt(&st(503), 3, 4), Some(Duration::from_secs(2)));
        assert_eq!(next_attempt(&st(502), 5, 4), None, "retries used up");
        assert_eq!(next_attempt(&st(500), 1, 0), None, "retries = 0");
        assert_eq!(next_attempt(&st(400), 1, 4), None);
        assert_eq!(next_attempt(&st(404), 1, 4), None);
        assert_eq!(next_attempt(&st(429), 2, 4), Some(Duration::from_secs(1)));
        let limited = Outcome::Status {
            code: 429,
            retry_after: Some(Duration::from_millis(2500)),
        };
        assert_eq!(
            next_attempt(&limited, 1, 4),
            Some(Duration::from_millis(2500))
        );
        let greedy = Outcome::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(next_attempt(&greedy, 1, 4), Some(MAX_RETRY_AFTER));
        assert_eq!(
            next_attempt(&Outcome::Transport("timeout".into()), 2, 4),
            Some(Duration::from_secs(1))
        );
        assert_eq!(next_attempt(&st(500), 20, 30), Some(MAX_BACKOFF), "capped");
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 0.75 "),
            Some(Duration::from_millis(750))
        );
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        for bad in ["", "-1", "soon", "NaN", "inf", "Wed, 21 Oct 2015 07:28"] {
            assert_eq!(parse_retry_after(bad), None, "{bad}");
        }
        // The HTTP-date form: the wait until that time, none once past.
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_400); // 07:26:40
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(retry_after_at(date, now), Some(Duration::from_secs(80)));
        let later = now + Duration::from_secs(3600);
        assert_eq!(retry_after_at(date, later), Some(Duration::ZERO));
    }

    #[test]
    fn stream_health_events_read_plainly_and_can_be_chosen() {
        let unstable = Event::Unstable {
            name: "DJ *Alice*".into(),
            state: "starved",
            detail: "310 kbit/s at 12 fps, their usual is 2500 kbit/s".into(),
            on_air: true,
        };
        let back = Event::Back {
            name: "DJ *Alice*".into(),
            after: Duration::from_secs(75),
            on_air: true,
        };
        assert_eq!(
            discord_text(&unstable),
            "⚠️ **DJ \\*Alice\\***'s stream is starved (310 kbit/s at 12 fps, their usual is 2500 kbit/s); the be-right-back card is on."
        );
        assert_eq!(
            discord_text(&back),
            "✅ **DJ \\*Alice\\***'s stream is back after 1 min 15 s."
        );
        let j: serde_json::Value =
            serde_json::from_str(&format_message(&back, NotifyFormat::Json, 7)).unwrap_or_default();
        assert_eq!(j["event"], "back");
        assert_eq!(j["after_s"], 75.0);
        let f = Filter::new(&[EventKind::Unstable, EventKind::Back, EventKind::GaveUp]);
        assert!(f.wants(&unstable) && f.wants(&back));
        assert!(f.wants(&Event::GaveUp { name: "a".into() }));
        assert!(crate::config::Config::parse(
            "[[notify]]\nurl = \"http://127.0.0.1:9/x\"\nevents = [\"unstable\", \"back\", \"gave_up\"]\n"
        )
        .is_ok());
    }

    #[test]
    fn filter_all_or_listed_and_single_stream_ends_stay_quiet() {
        let lost = Event::ObsLost { reason: "x".into() };
        let left = Event::Left { name: "a".into() };
        let off = Event::OffAir {
            name: "a".into(),
            reason: OffAirReason::Left,
        };
        assert!(Filter::new(&[]).wants(&lost));
        let f = Filter::new(&[EventKind::Left, EventKind::OffAir]);
        assert!(f.wants(&left) && f.wants(&off));
        assert!(!f.wants(&lost));
        let failed = |failures| Event::RelayFailed {
            name: "a".into(),
            why: "the server ended the stream".into(),
            failures,
        };
        let all = Filter::new(&[]);
        assert!(!all.wants(&failed(1)), "one end is how streamers leave");
        assert!(all.wants(&failed(2)));
        assert!(!all.wants(&Event::RelayRecovered {
            name: "a".into(),
            failures: 1
        }));
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = crossbeam_channel::bounded(2);
        let mut s = Sink {
            name: "hook".into(),
            wants: Filter::new(&[EventKind::Left]),
            tx,
            metrics: metrics.clone(),
            dropped_since_warn: 0,
            last_warn: None,
        };
        let left = Arc::new(Event::Left { name: "a".into() });
        for _ in 0..5 {
            s.offer(&left);
        }
        s.offer(&Arc::new(Event::ObsBack));
        assert_eq!(rx.len(), 2, "filtered out events are not queued");
        let text = metrics.render(&crate::view::View::default(), 0);
        assert!(
            text.contains(
                "motherstream_notifications_total{notifier=\"hook\",outcome=\"dropped\"} 3"
            ),
            "{text}"
        );
    }
}
