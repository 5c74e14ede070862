//! `GET /metrics`: Prometheus metrics through the `prometheus` crate
//! (tikv's rust-prometheus; the classic text format, which `promtool check
//! metrics` and every Prometheus read). Counters and histograms are
//! atomics updated where things happen (the engine's events, the HTTP
//! workers' hook path, the notifiers); the gauges that describe the queue
//! are set from the engine's published view at scrape time, so the engine
//! does no metrics work between scrapes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{
    exponential_buckets, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::events::Event;
use crate::view::View;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// 5 ms .. ~20 s.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.005, 2.0, 13).unwrap_or_default()
}

pub struct Metrics {
    registry: Registry,
    queue_length: IntGauge,
    on_air: IntGauge,
    on_air_seconds: Gauge,
    obs_connected: IntGauge,
    output_up: IntGauge,
    switches: IntCounterVec,
    cut_latency: Histogram,
    source_restarts: IntCounter,
    output_restarts: IntCounter,
    events: IntCounterVec,
    hooks: IntCounterVec,
    hook_latency: HistogramVec,
    admin: IntCounterVec,
    notifications: IntCounterVec,
    auth_failures: IntCounterVec,
    auth_throttled: IntCounterVec,
    health_changes: IntCounterVec,
    unwell_seconds: prometheus::Counter,
}

// The names, helps and labels below are constants of this file: the
// crate refuses only malformed ones, so a failure is a bug caught by the
// unit test, never something a peer or the config can cause.
const CONST_DEF: &str = "metric definitions are constants";

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("motherstream")
}

fn hopts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace("motherstream")
        .buckets(latency_buckets())
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::with_opts(opts(name, help)).expect(CONST_DEF)
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::with_opts(opts(name, help)).expect(CONST_DEF)
}

fn counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(opts(name, help), labels).expect(CONST_DEF)
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            queue_length: gauge(
                "queue_length",
                "Streamers in the queue, the one on air included",
            ),
            on_air: gauge(
                "on_air",
                "1 while the output shows the streamer on air, 0 while it shows the slate or nothing",
            ),
            on_air_seconds: Gauge::with_opts(opts(
                "on_air_streamer_seconds",
                "How long the streamer on air has been on air",
            ))
            .expect(CONST_DEF),
            obs_connected: gauge(
                "obs_connected",
                "1 while connected to obs-websocket (0 also when OBS control is off)",
            ),
            output_up: gauge("output_up", "1 while the relay's output ffmpeg runs"),
            switches: counters(
                "switches_total",
                "Streamers taken off the output, by reason",
                &["reason"],
            ),
            cut_latency: Histogram::with_opts(hopts(
                "cut_latency_seconds",
                "From the decision to switch to the cut to the new streamer",
            ))
            .expect(CONST_DEF),
            source_restarts: counter(
                "source_restarts_total",
                "Streamers' streams read again after they failed",
            ),
            output_restarts: counter(
                "output_restarts_total",
                "Times the relay's output ffmpeg died or could not start",
            ),
            events: counters("events_total", "Events emitted, by kind", &["kind"]),
            hooks: counters(
                "hooks_total",
                "nginx-rtmp hook calls answered, by endpoint and status",
                &["endpoint", "status"],
            ),
            hook_latency: HistogramVec::new(
                hopts(
                    "hook_latency_seconds",
                    "Time to answer a hook call (includes the group commit)",
                ),
                &["endpoint"],
            )
            .expect(CONST_DEF),
            admin: counters(
                "admin_requests_total",
                "Authorized admin requests, by endpoint",
                &["endpoint"],
            ),
            notifications: counters(
                "notifications_total",
                "Notifications by notifier and outcome (sent, failed, dropped)",
                &["notifier", "outcome"],
            ),
            auth_failures: counters(
                "admin_auth_failures_total",
                "Wrong admin tokens, by way in (console_login, bearer)",
                &["via"],
            ),
            auth_throttled: counters(
                "admin_auth_throttled_total",
                "Admin token tries refused with 429 before being checked (too many wrong ones), by way in",
                &["via"],
            ),
            health_changes: counters(
                "stream_health_changes_total",
                "Read streams entering a state (live, stalled, starved), splice mode",
                &["state"],
            ),
            unwell_seconds: prometheus::Counter::with_opts(opts(
                "stalled_seconds_total",
                "Seconds the on-air streamer's stream was stalled or starved (the be-right-back card on)",
            ))
            .expect(CONST_DEF),
            registry: Registry::new(),
        };
        let build = IntGaugeVec::new(
            opts("build_info", "Version of the running daemon"),
            &["version"],
        )
        .expect(CONST_DEF);
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // Shown at 0 from the start, so an alert on their rate has a series.
        for via in ["console_login", "bearer"] {
            m.auth_failures.with_label_values(&[via]);
            m.auth_throttled.with_label_values(&[via]);
        }
        // The output is started with the daemon; it counts as up until it
        // is reported down.
        m.output_up.set(1);
        let r = &m.registry;
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.queue_length.clone()),
            Box::new(m.on_air.clone()),
            Box::new(m.on_air_seconds.clone()),
            Box::new(m.obs_connected.clone()),
            Box::new(m.output_up.clone()),
            Box::new(m.switches.clone()),
            Box::new(m.cut_latency.clone()),
            Box::new(m.source_restarts.clone()),
            Box::new(m.output_restarts.clone()),
            Box::new(m.events.clone()),
            Box::new(m.hooks.clone()),
            Box::new(m.hook_latency.clone()),
            Box::new(m.admin.clone()),
            Box::new(m.notifications.clone()),
            Box::new(m.auth_failures.clone()),
            Box::new(m.auth_throttled.clone()),
            Box::new(m.health_changes.clone()),
            Box::new(m.unwell_seconds.clone()),
            Box::new(build),
        ];
        for c in collectors {
            r.register(c).expect(CONST_DEF);
        }
        m
    }

    /// Count what an event says.
    pub fn observe(&self, ev: &Event) {
        self.events.with_label_values(&[ev.kind().as_str()]).inc();
        match ev {
            Event::OffAir { reason, .. } => {
                self.switches.with_label_values(&[reason.as_str()]).inc();
            }
            Event::OnAir { switch_latency, .. } => {
                self.cut_latency.observe(switch_latency.as_secs_f64());
            }
            Event::RelayFailed { .. } => {
                self.source_restarts.inc();
            }
            Event::OutputFailed { .. } => {
                self.output_failed();
                self.output_up.set(0);
            }
            Event::OutputRecovered => {
                self.output_up.set(1);
            }
            _ => {}
        }
    }

    /// The output died or could not start (each time, also while it is
    /// already down: the event is sent once per outage).
    pub fn output_failed(&self) {
        self.output_restarts.inc();
    }

    pub fn hook_answered(&self, endpoint: &'static str, status: u16, took: Duration) {
        self.hooks
            .with_label_values(&[endpoint, &status.to_string()])
            .inc();
        self.hook_latency
            .with_label_values(&[endpoint])
            .observe(took.as_secs_f64());
    }

    /// `endpoint` is a known admin path (never what a client typed).
    pub fn admin_request(&self, endpoint: &str) {
        self.admin.with_label_values(&[endpoint]).inc();
    }

    /// A wrong admin token; `via`: console_login or bearer.
    pub fn auth_failed(&self, via: &'static str) {
        self.auth_failures.with_label_values(&[via]).inc();
    }

    /// A token try refused unchecked (over the login budget).
    pub fn auth_throttled(&self, via: &'static str) {
        self.auth_throttled.with_label_values(&[via]).inc();
    }

    /// A read stream entered `state` (live, stalled, starved).
    pub fn health_changed(&self, state: &str) {
        self.health_changes.with_label_values(&[state]).inc();
    }

    /// The on-air streamer's stream came through again (or was given up on)
    /// after this many seconds.
    pub fn unwell_seconds(&self, secs: f64) {
        self.unwell_seconds.inc_by(secs.max(0.0));
    }

    /// `outcome`: sent, failed or dropped.
    pub fn notification(&self, notifier: &str, outcome: &'static str) {
        self.notifications
            .with_label_values(&[notifier, outcome])
            .inc();
    }

    /// The text for `/metrics`, with the queue gauges taken from `view`.
    pub fn render(&self, view: &View, now_ms: u64) -> String {
        self.queue_length.set(view.names.len() as i64);
        // On air = the output shows them (not the slate while their
        // stream has no picture yet).
        self.on_air.set(i64::from(
            view.on_air
                .as_ref()
                .is_some_and(|o| o.relay_state == "running"),
        ));
        self.on_air_seconds.set(
            view.on_air
                .as_ref()
                .filter(|o| o.since_ms > 0)
                .map_or(0.0, |o| now_ms.saturating_sub(o.since_ms) as f64 / 1000.0),
        );
        self.obs_connected.set(i64::from(view.obs.connected));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode the metrics: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Times one hook call from the moment its request was read.
pub struct HookTimer {
    metrics: Arc<Metrics>,
    endpoint: &'static str,
    started: Instant,
}

impl HookTimer {
    pub fn start(metrics: &Arc<Metrics>, endpoint: &'static str) -> HookTimer {
        HookTimer {
            metrics: metrics.clone(),
            endpoint,
            started: Instant::now(),
        }
    }

    pub fn done(self, status: u16) {
        self.metrics
            .hook_answered(self.endpoint, status, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OffAirReason;

    #[test]
    fn events_move_the_counters() {
        let m = Metrics::new();
        m.observe(&Event::OffAir {
            name: "a".into(),
            reason: OffAirReason::SlotEnded,
        });
        m.observe(&Event::OnAir {
            name: "b".into(),
            slot_seconds: None,
            next: None,
            switch_latency: Duration::from_millis(300),
        });
        m.observe(&Event::OutputFailed { detail: "x".into() });
        // Dead again before it was back: counted, not an event.
        m.output_failed();
        m.hook_answered("on_publish", 200, Duration::from_millis(2));
        let text = m.render(&View::default(), 0);
        for want in [
            "motherstream_switches_total{reason=\"slot_ended\"} 1",
            "motherstream_cut_latency_seconds_count 1",
            "motherstream_output_restarts_total 2",
            "motherstream_output_up 0",
            "motherstream_hooks_total{endpoint=\"on_publish\",status=\"200\"} 1",
            "motherstream_queue_length 0",
            "motherstream_build_info{version=",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
