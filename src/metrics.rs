//! `GET /metrics`: Prometheus metrics through the `prometheus-client`
//! crate. Counters and histograms are atomics updated where things happen
//! (the engine's events, the HTTP workers' hook path, the notifiers); the
//! gauges that describe the queue are set from the engine's published view
//! at scrape time, so the engine does no metrics work between scrapes.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::engine::View;
use crate::events::Event;

type Labels = Vec<(&'static str, String)>;

/// What `/metrics` answers with (the crate writes OpenMetrics text, which
/// Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn latency_histogram() -> Histogram {
    // 5 ms .. ~20 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

pub struct Metrics {
    registry: Registry,
    queue_length: Gauge,
    on_air: Gauge,
    on_air_seconds: Gauge<f64, AtomicU64>,
    obs_connected: Gauge,
    output_up: Gauge,
    switches: Family<Labels, Counter>,
    cut_latency: Histogram,
    source_restarts: Counter,
    output_restarts: Counter,
    events: Family<Labels, Counter>,
    hooks: Family<Labels, Counter>,
    hook_latency: Family<Labels, Histogram, fn() -> Histogram>,
    admin: Family<Labels, Counter>,
    notifications: Family<Labels, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("motherstream");
        let m = Metrics {
            queue_length: Gauge::default(),
            on_air: Gauge::default(),
            on_air_seconds: Gauge::default(),
            obs_connected: Gauge::default(),
            output_up: Gauge::default(),
            switches: Family::default(),
            cut_latency: latency_histogram(),
            source_restarts: Counter::default(),
            output_restarts: Counter::default(),
            events: Family::default(),
            hooks: Family::default(),
            hook_latency: Family::new_with_constructor(latency_histogram),
            admin: Family::default(),
            notifications: Family::default(),
            registry: Registry::default(),
        };
        // The output is started with the daemon; it counts as up until it
        // is reported down.
        m.output_up.set(1);
        r.register(
            "queue_length",
            "Streamers in the queue, the one on air included",
            m.queue_length.clone(),
        );
        r.register(
            "on_air",
            "1 while a streamer is on air, 0 while the slate shows",
            m.on_air.clone(),
        );
        r.register(
            "on_air_streamer_seconds",
            "How long the streamer on air has been on air",
            m.on_air_seconds.clone(),
        );
        r.register(
            "obs_connected",
            "1 while connected to obs-websocket (0 also when OBS control is off)",
            m.obs_connected.clone(),
        );
        r.register(
            "output_up",
            "1 while the relay's output ffmpeg runs",
            m.output_up.clone(),
        );
        r.register(
            "switches",
            "Streamers taken off the output, by reason",
            m.switches.clone(),
        );
        r.register(
            "cut_latency_seconds",
            "From the decision to switch to the cut to the new streamer",
            m.cut_latency.clone(),
        );
        r.register(
            "source_restarts",
            "Streamers' streams read again after they failed",
            m.source_restarts.clone(),
        );
        r.register(
            "output_restarts",
            "Times the relay's output ffmpeg died or could not start",
            m.output_restarts.clone(),
        );
        r.register("events", "Events emitted, by kind", m.events.clone());
        r.register(
            "hooks",
            "nginx-rtmp hook calls answered, by endpoint and status",
            m.hooks.clone(),
        );
        r.register(
            "hook_latency_seconds",
            "Time to answer a hook call (includes the group commit)",
            m.hook_latency.clone(),
        );
        r.register(
            "admin_requests",
            "Authorized admin requests, by endpoint",
            m.admin.clone(),
        );
        r.register(
            "notifications",
            "Notifications by notifier and outcome (sent, failed, dropped)",
            m.notifications.clone(),
        );
        let build: Family<Labels, Gauge> = Family::default();
        build
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        r.register("build_info", "Version of the running daemon", build);
        Metrics { registry: r, ..m }
    }

    /// Count what an event says.
    pub fn observe(&self, ev: &Event) {
        self.events
            .get_or_create(&vec![("kind", ev.kind().to_string())])
            .inc();
        match ev {
            Event::OffAir { reason, .. } => {
                self.switches
                    .get_or_create(&vec![("reason", reason.as_str().to_string())])
                    .inc();
            }
            Event::OnAir { switch_latency, .. } => {
                self.cut_latency.observe(switch_latency.as_secs_f64());
            }
            Event::RelayFailed { .. } => {
                self.source_restarts.inc();
            }
            Event::OutputFailed { .. } => {
                self.output_restarts.inc();
                self.output_up.set(0);
            }
            Event::OutputRecovered => {
                self.output_up.set(1);
            }
            _ => {}
        }
    }

    pub fn hook_answered(&self, endpoint: &'static str, status: u16, took: Duration) {
        self.hooks
            .get_or_create(&vec![
                ("endpoint", endpoint.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.hook_latency
            .get_or_create(&vec![("endpoint", endpoint.to_string())])
            .observe(took.as_secs_f64());
    }

    /// `endpoint` is a known admin path (never what a client typed).
    pub fn admin_request(&self, endpoint: &str) {
        self.admin
            .get_or_create(&vec![("endpoint", endpoint.to_string())])
            .inc();
    }

    /// `outcome`: sent, failed or dropped.
    pub fn notification(&self, notifier: &str, outcome: &'static str) {
        self.notifications
            .get_or_create(&vec![
                ("notifier", notifier.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// The text for `/metrics`, with the queue gauges taken from `view`.
    pub fn render(&self, view: &View, now_ms: u64) -> String {
        self.queue_length.set(view.names.len() as i64);
        self.on_air.set(i64::from(view.on_air.is_some()));
        self.on_air_seconds.set(
            view.on_air
                .as_ref()
                .filter(|o| o.since_ms > 0)
                .map_or(0.0, |o| now_ms.saturating_sub(o.since_ms) as f64 / 1000.0),
        );
        self.obs_connected.set(i64::from(view.obs.connected));
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            log::error!("cannot encode the metrics: {e}");
        }
        out
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
        m.hook_answered("on_publish", 200, Duration::from_millis(2));
        let text = m.render(&View::default(), 0);
        for want in [
            "motherstream_switches_total{reason=\"slot_ended\"} 1",
            "motherstream_cut_latency_seconds_count 1",
            "motherstream_output_restarts_total 1",
            "motherstream_output_up 0",
            "motherstream_hooks_total{endpoint=\"on_publish\",status=\"200\"} 1",
            "motherstream_queue_length 0",
            "motherstream_build_info{version=",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
