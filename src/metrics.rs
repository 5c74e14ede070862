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
use crate::handover::{CounterCarry, HistogramCarry};
use crate::view::View;

/// What `/metrics` answers with.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// 5 ms .. ~20 s.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.005, 2.0, 13).unwrap_or_default()
}

pub struct Metrics {
    registry: Registry,
    show: ShowMetrics,
    callers: CallerMetrics,
}

/// What the show does: the queue, the output, switches, events, streams.
struct ShowMetrics {
    queue_length: IntGauge,
    on_air: IntGauge,
    on_air_seconds: Gauge,
    obs_connected: IntGauge,
    output_up: IntGauge,
    switches: IntCounterVec,
    cut_latency: Carrying<Histogram>,
    source_restarts: IntCounter,
    output_restarts: IntCounter,
    events: IntCounterVec,
    health_changes: IntCounterVec,
    unwell_seconds: prometheus::Counter,
}

/// Who calls the daemon and whom it calls: hooks, admin requests and
/// their tokens, notifications.
struct CallerMetrics {
    hooks: IntCounterVec,
    hook_latency: Carrying<HistogramVec>,
    admin: IntCounterVec,
    notifications: IntCounterVec,
    auth_failures: IntCounterVec,
    auth_throttled: IntCounterVec,
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

/// `c`, registered in `r` (what `r` gathers at a scrape).
fn registered<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone())).expect(CONST_DEF);
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    registered(r, IntGauge::with_opts(opts(name, help)).expect(CONST_DEF))
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    registered(r, IntCounter::with_opts(opts(name, help)).expect(CONST_DEF))
}

fn counters(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        r,
        IntCounterVec::new(opts(name, help), labels).expect(CONST_DEF),
    )
}

impl ShowMetrics {
    fn new(r: &Registry) -> ShowMetrics {
        ShowMetrics {
            queue_length: gauge(
                r,
                "queue_length",
                "Streamers in the queue, the one on air included",
            ),
            on_air: gauge(
                r,
                "on_air",
                "1 while the output shows the streamer on air, 0 while it shows the slate or nothing",
            ),
            on_air_seconds: registered(
                r,
                Gauge::with_opts(opts(
                    "on_air_streamer_seconds",
                    "How long the streamer on air has been on air",
                ))
                .expect(CONST_DEF),
            ),
            obs_connected: gauge(
                r,
                "obs_connected",
                "1 while connected to obs-websocket (0 also when OBS control is off)",
            ),
            output_up: gauge(r, "output_up", "1 while the relay's output ffmpeg runs"),
            switches: counters(
                r,
                "switches_total",
                "Streamers taken off the output, by reason",
                &["reason"],
            ),
            cut_latency: registered(
                r,
                Carrying::new(
                    Histogram::with_opts(hopts(
                        "cut_latency_seconds",
                        "From the decision to switch to the cut to the new streamer",
                    ))
                    .expect(CONST_DEF),
                ),
            ),
            source_restarts: counter(
                r,
                "source_restarts_total",
                "Streamers' streams read again after they failed",
            ),
            output_restarts: counter(
                r,
                "output_restarts_total",
                "Times the relay's output ffmpeg died or could not start",
            ),
            events: counters(r, "events_total", "Events emitted, by kind", &["kind"]),
            health_changes: counters(
                r,
                "stream_health_changes_total",
                "Read streams entering a state (live, stalled, starved), splice mode",
                &["state"],
            ),
            unwell_seconds: registered(
                r,
                prometheus::Counter::with_opts(opts(
                    "stalled_seconds_total",
                    "Seconds the on-air streamer's stream was stalled or starved (the be-right-back card on)",
                ))
                .expect(CONST_DEF),
            ),
        }
    }
}

impl CallerMetrics {
    fn new(r: &Registry) -> CallerMetrics {
        CallerMetrics {
            hooks: counters(
                r,
                "hooks_total",
                "nginx-rtmp hook calls answered, by endpoint and status",
                &["endpoint", "status"],
            ),
            hook_latency: registered(
                r,
                Carrying::new(
                    HistogramVec::new(
                        hopts(
                            "hook_latency_seconds",
                            "Time to answer a hook call (includes the group commit)",
                        ),
                        &["endpoint"],
                    )
                    .expect(CONST_DEF),
                ),
            ),
            admin: counters(
                r,
                "admin_requests_total",
                "Authorized admin requests, by endpoint",
                &["endpoint"],
            ),
            notifications: counters(
                r,
                "notifications_total",
                "Notifications by notifier and outcome (sent, failed, dropped)",
                &["notifier", "outcome"],
            ),
            auth_failures: counters(
                r,
                "admin_auth_failures_total",
                "Wrong admin tokens, by way in (console_login, bearer)",
                &["via"],
            ),
            auth_throttled: counters(
                r,
                "admin_auth_throttled_total",
                "Admin token tries refused with 429 before being checked (too many wrong ones), by way in",
                &["via"],
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let show = ShowMetrics::new(&registry);
        let callers = CallerMetrics::new(&registry);
        let build = registered(
            &registry,
            IntGaugeVec::new(
                opts("build_info", "Version of the running daemon"),
                &["version"],
            )
            .expect(CONST_DEF),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // Shown at 0 from the start, so an alert on their rate has a series.
        for via in ["console_login", "bearer"] {
            callers.auth_failures.with_label_values(&[via]);
            callers.auth_throttled.with_label_values(&[via]);
        }
        // The output is started with the daemon; it counts as up until it
        // is reported down.
        show.output_up.set(1);
        Metrics {
            registry,
            show,
            callers,
        }
    }

    /// The counters as a hand-over carries them (`crate::handover`), so
    /// `/metrics` counts on across an upgrade: a reset would read as a
    /// counter reset to Prometheus (`rate()` copes, `increase()` over the
    /// hand-over undercounts). Histograms: [`Metrics::carry_histograms`].
    pub(crate) fn carry(&self) -> Vec<CounterCarry> {
        let mut v = Vec::new();
        for c in self.counters() {
            for fam in prometheus::core::Collector::collect(c) {
                for m in fam.get_metric() {
                    let value = m.get_counter().get_value();
                    if value > 0.0 {
                        v.push(CounterCarry {
                            name: fam.get_name().to_string(),
                            labels: m
                                .get_label()
                                .iter()
                                .map(|l| (l.get_name().to_string(), l.get_value().to_string()))
                                .collect(),
                            value,
                        });
                    }
                }
            }
        }
        v
    }

    /// Count on from what the previous binary counted (before any count
    /// here). Entries of counters or labels this binary does not have are
    /// skipped.
    pub(crate) fn restore(&self, carried: &[CounterCarry]) {
        for c in carried {
            let Some(counter) = self.counters().into_iter().find(|k| {
                prometheus::core::Collector::desc(*k)
                    .first()
                    .is_some_and(|d| d.fq_name == c.name)
            }) else {
                continue;
            };
            counter.add(c);
        }
    }

    /// The histograms as a hand-over carries them (each label set's
    /// buckets, sum and count), for the same reason as the counters.
    pub(crate) fn carry_histograms(&self) -> Vec<HistogramCarry> {
        self.histograms()
            .into_iter()
            .flat_map(prometheus::core::Collector::collect)
            .flat_map(|fam| {
                let name = fam.get_name().to_string();
                fam.get_metric()
                    .iter()
                    .filter(|m| m.get_histogram().get_sample_count() > 0)
                    .map(|m| HistogramCarry::of(&name, m))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Count on from the previous binary's histograms. Entries of
    /// histograms, labels or buckets this binary does not have are skipped
    /// (with another set of buckets the counts would not mean the same).
    pub(crate) fn restore_histograms(&self, carried: &[HistogramCarry]) {
        for c in carried {
            if let Some(h) = self.histograms().into_iter().find(|h| h.name() == c.name) {
                h.restore(c);
            }
        }
    }

    fn histograms(&self) -> Vec<&dyn CarriedHistogram> {
        vec![&self.show.cut_latency, &self.callers.hook_latency]
    }

    fn counters(&self) -> Vec<&dyn CarriedCounter> {
        vec![
            &self.show.switches,
            &self.show.source_restarts,
            &self.show.output_restarts,
            &self.show.events,
            &self.callers.hooks,
            &self.callers.admin,
            &self.callers.notifications,
            &self.callers.auth_failures,
            &self.callers.auth_throttled,
            &self.show.health_changes,
            &self.show.unwell_seconds,
        ]
    }

    /// Count what an event says.
    pub(crate) fn observe(&self, ev: &Event) {
        self.show
            .events
            .with_label_values(&[ev.kind().as_str()])
            .inc();
        match ev {
            Event::OffAir { reason, .. } => {
                self.show
                    .switches
                    .with_label_values(&[reason.as_str()])
                    .inc();
            }
            Event::OnAir { switch_latency, .. } => {
                self.show
                    .cut_latency
                    .live
                    .observe(switch_latency.as_secs_f64());
            }
            Event::RelayFailed { .. } => {
                self.show.source_restarts.inc();
            }
            Event::OutputFailed { .. } => {
                self.output_failed();
                self.show.output_up.set(0);
            }
            Event::OutputRecovered => {
                self.show.output_up.set(1);
            }
            _ => {}
        }
    }

    /// The output died or could not start (each time, also while it is
    /// already down: the event is sent once per outage).
    pub(crate) fn output_failed(&self) {
        self.show.output_restarts.inc();
    }

    pub(crate) fn hook_answered(&self, endpoint: &'static str, status: u16, took: Duration) {
        self.callers
            .hooks
            .with_label_values(&[endpoint, &status.to_string()])
            .inc();
        self.callers
            .hook_latency
            .live
            .with_label_values(&[endpoint])
            .observe(took.as_secs_f64());
    }

    /// `endpoint` is a known admin path (never what a client typed).
    pub(crate) fn admin_request(&self, endpoint: &str) {
        self.callers.admin.with_label_values(&[endpoint]).inc();
    }

    /// A wrong admin token; `via`: console_login or bearer.
    pub(crate) fn auth_failed(&self, via: &'static str) {
        self.callers.auth_failures.with_label_values(&[via]).inc();
    }

    /// A token try refused unchecked (over the login budget).
    pub(crate) fn auth_throttled(&self, via: &'static str) {
        self.callers.auth_throttled.with_label_values(&[via]).inc();
    }

    /// A read stream entered `state` (live, stalled, starved).
    pub(crate) fn health_changed(&self, state: &str) {
        self.show.health_changes.with_label_values(&[state]).inc();
    }

    /// The on-air streamer's stream came through again (or was given up on)
    /// after this many seconds.
    pub(crate) fn unwell_seconds(&self, secs: f64) {
        self.show.unwell_seconds.inc_by(secs.max(0.0));
    }

    /// `outcome`: sent, failed or dropped.
    pub(crate) fn notification(&self, notifier: &str, outcome: &'static str) {
        self.callers
            .notifications
            .with_label_values(&[notifier, outcome])
            .inc();
    }

    /// The text for `/metrics`, with the queue gauges taken from `view`.
    pub fn render(&self, view: &View, now_ms: u64) -> String {
        self.show.queue_length.set(view.names.len() as i64);
        // On air = the output shows them (not the slate while their
        // stream has no picture yet).
        self.show.on_air.set(i64::from(
            view.on_air
                .as_ref()
                .is_some_and(|o| o.relay_state == "running"),
        ));
        self.show.on_air_seconds.set(
            view.on_air
                .as_ref()
                .filter(|o| o.since_ms > 0)
                .map_or(0.0, |o| now_ms.saturating_sub(o.since_ms) as f64 / 1000.0),
        );
        self.show.obs_connected.set(i64::from(view.obs.connected));
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

/// A counter whose value a hand-over carries.
trait CarriedCounter: prometheus::core::Collector {
    fn add(&self, c: &CounterCarry);
}

impl CarriedCounter for IntCounter {
    fn add(&self, c: &CounterCarry) {
        self.inc_by(c.value as u64);
    }
}

impl CarriedCounter for prometheus::Counter {
    fn add(&self, c: &CounterCarry) {
        if c.value.is_finite() && c.value > 0.0 {
            self.inc_by(c.value);
        }
    }
}

impl CarriedCounter for IntCounterVec {
    fn add(&self, c: &CounterCarry) {
        let labels: std::collections::HashMap<&str, &str> = c
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Ok(m) = self.get_metric_with(&labels) {
            m.inc_by(c.value as u64);
        }
    }
}

/// A histogram (or a family of them) that counts on from what a previous
/// binary carried: the crate's histograms cannot be set, so what was
/// carried is added to what `live` observed whenever they are collected.
#[derive(Clone)]
struct Carrying<H> {
    live: H,
    /// Carried label sets (labels sorted by name): cumulative bucket
    /// counts, sum, count.
    base: Arc<std::sync::Mutex<Vec<HistogramCarry>>>,
}

impl<H: prometheus::core::Collector> Carrying<H> {
    fn new(live: H) -> Carrying<H> {
        Carrying {
            live,
            base: Arc::default(),
        }
    }
}

impl<H: prometheus::core::Collector> prometheus::core::Collector for Carrying<H> {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.live.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.live.collect();
        let Ok(base) = self.base.lock() else {
            return families;
        };
        for fam in &mut families {
            for m in fam.mut_metric() {
                let labels = HistogramCarry::labels_of(m);
                if let Some(b) = base.iter().find(|b| b.labels == labels) {
                    let mut h = m.get_histogram().clone();
                    b.add_to(&mut h);
                    m.set_histogram(h);
                }
            }
        }
        families
    }
}

impl HistogramCarry {
    fn of(name: &str, m: &prometheus::proto::Metric) -> HistogramCarry {
        let h = m.get_histogram();
        HistogramCarry {
            name: name.to_string(),
            labels: HistogramCarry::labels_of(m),
            buckets: h
                .get_bucket()
                .iter()
                .map(|b| (b.get_upper_bound(), b.get_cumulative_count()))
                .collect(),
            sum: h.get_sample_sum(),
            count: h.get_sample_count(),
        }
    }

    /// A metric's labels, sorted by name.
    fn labels_of(m: &prometheus::proto::Metric) -> Vec<(String, String)> {
        let mut l: Vec<(String, String)> = m
            .get_label()
            .iter()
            .map(|l| (l.get_name().to_string(), l.get_value().to_string()))
            .collect();
        l.sort();
        l
    }

    /// Add these counts to `h` (same buckets: checked at restore).
    fn add_to(&self, h: &mut prometheus::proto::Histogram) {
        let buckets = h
            .get_bucket()
            .iter()
            .zip(&self.buckets)
            .map(|(b, (_, n))| {
                let mut b = b.clone();
                b.set_cumulative_count(b.get_cumulative_count() + n);
                b
            })
            .collect();
        h.set_bucket(buckets);
        h.set_sample_count(h.get_sample_count() + self.count);
        if self.sum.is_finite() {
            h.set_sample_sum(h.get_sample_sum() + self.sum);
        }
    }
}

/// A histogram whose state a hand-over carries.
trait CarriedHistogram: prometheus::core::Collector {
    fn name(&self) -> String {
        self.desc()
            .first()
            .map(|d| d.fq_name.clone())
            .unwrap_or_default()
    }
    /// Take `c` on (its label set is shown from now on, at its carried
    /// value, even before it is observed again).
    fn restore(&self, c: &HistogramCarry);
}

impl<H: prometheus::core::Collector + LabelSets> CarriedHistogram for Carrying<H> {
    fn restore(&self, c: &HistogramCarry) {
        let buckets: Vec<f64> = latency_buckets();
        if c.buckets.len() != buckets.len()
            || c.buckets.iter().zip(&buckets).any(|(a, b)| a.0 != *b)
        {
            log::warn!(
                "/metrics: the carried {} has other buckets; it starts afresh",
                c.name
            );
            return;
        }
        if !self.live.touch(&c.labels) {
            return;
        }
        let mut labels = c.labels.clone();
        labels.sort();
        if let Ok(mut base) = self.base.lock() {
            base.retain(|b| b.labels != labels);
            base.push(HistogramCarry {
                labels,
                ..c.clone()
            });
        }
    }
}

/// Make a label set exist (so that it is collected); false when the
/// histogram has no such labels.
trait LabelSets {
    fn touch(&self, labels: &[(String, String)]) -> bool;
}

impl LabelSets for Histogram {
    fn touch(&self, labels: &[(String, String)]) -> bool {
        labels.is_empty()
    }
}

impl LabelSets for HistogramVec {
    fn touch(&self, labels: &[(String, String)]) -> bool {
        let l: std::collections::HashMap<&str, &str> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.get_metric_with(&l).is_ok()
    }
}

/// Times one hook call from the moment its request was read.
pub(crate) struct HookTimer {
    metrics: Arc<Metrics>,
    endpoint: &'static str,
    started: Instant,
}

impl HookTimer {
    pub(crate) fn start(metrics: &Arc<Metrics>, endpoint: &'static str) -> HookTimer {
        HookTimer {
            metrics: metrics.clone(),
            endpoint,
            started: Instant::now(),
        }
    }

    pub(crate) fn done(self, status: u16) {
        self.metrics
            .hook_answered(self.endpoint, status, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-over carries the counters: the new binary's /metrics counts
    /// on from the old one's.
    #[test]
    fn counters_carry_over_a_hand_over() {
        let old = Metrics::new();
        old.hook_answered("publish", 200, Duration::from_millis(3));
        old.hook_answered("publish", 200, Duration::from_millis(3));
        old.hook_answered("play", 403, Duration::from_millis(3));
        old.output_failed();
        old.auth_failed("admin");
        old.unwell_seconds(1.5);
        let carried = old.carry();
        let text = serde_json::to_string(&carried).unwrap();
        let new = Metrics::new();
        new.hook_answered("publish", 200, Duration::from_millis(3));
        new.restore(&serde_json::from_str::<Vec<CounterCarry>>(&text).unwrap());
        let c = new.carry();
        let value = |name: &str, labels: &[(&str, &str)]| {
            c.iter()
                .find(|x| {
                    x.name == name
                        && labels
                            .iter()
                            .all(|(k, v)| x.labels.iter().any(|(a, b)| a == k && b == v))
                })
                .map(|x| x.value)
        };
        assert_eq!(
            value(
                "motherstream_hooks_total",
                &[("endpoint", "publish"), ("status", "200")]
            ),
            Some(3.0)
        );
        assert_eq!(
            value(
                "motherstream_hooks_total",
                &[("endpoint", "play"), ("status", "403")]
            ),
            Some(1.0)
        );
        assert_eq!(value("motherstream_output_restarts_total", &[]), Some(1.0));
        assert_eq!(value("motherstream_stalled_seconds_total", &[]), Some(1.5));
        assert!(c.iter().any(|x| x.name.contains("auth_failures")), "{c:?}");
        // Names this binary does not know are skipped.
        new.restore(&[CounterCarry {
            name: "motherstream_gone_total".into(),
            labels: vec![],
            value: 9.0,
        }]);
    }

    /// A hand-over carries the histograms too: buckets, sum and count go
    /// on from the old binary's, label sets not observed again included.
    #[test]
    fn histograms_carry_over_a_hand_over() {
        let old = Metrics::new();
        old.hook_answered("on_publish", 200, Duration::from_millis(3));
        old.hook_answered("on_publish", 200, Duration::from_millis(50));
        old.hook_answered("on_play", 200, Duration::from_millis(7));
        old.observe(&Event::OnAir {
            name: "b".into(),
            slot_seconds: None,
            next: None,
            switch_latency: Duration::from_millis(300),
        });
        let text = serde_json::to_string(&old.carry_histograms()).unwrap();
        let new = Metrics::new();
        new.hook_answered("on_publish", 200, Duration::from_millis(3));
        new.restore_histograms(&serde_json::from_str::<Vec<HistogramCarry>>(&text).unwrap());
        let out = new.render(&View::default(), 0);
        for want in [
            "motherstream_hook_latency_seconds_count{endpoint=\"on_publish\"} 3",
            "motherstream_hook_latency_seconds_bucket{endpoint=\"on_publish\",le=\"0.005\"} 2",
            "motherstream_hook_latency_seconds_bucket{endpoint=\"on_publish\",le=\"+Inf\"} 3",
            "motherstream_hook_latency_seconds_count{endpoint=\"on_play\"} 1",
            "motherstream_cut_latency_seconds_count 1",
        ] {
            assert!(out.contains(want), "{want} missing from:\n{out}");
        }
        let carried = new.carry_histograms();
        let publish = carried
            .iter()
            .find(|h| h.labels == [("endpoint".to_string(), "on_publish".to_string())])
            .unwrap();
        assert!((publish.sum - 0.056).abs() < 1e-9, "{publish:?}");
        // Under 0.1 s: 3 (the 50 ms one in a bucket of its own).
        let under =
            |h: &HistogramCarry, le: f64| h.buckets.iter().rev().find(|b| b.0 <= le).map(|b| b.1);
        assert_eq!(under(publish, 0.1), Some(3));
        assert_eq!(under(publish, 0.03), Some(2));
        // Other buckets do not mean the same counts: skipped.
        let other = Metrics::new();
        let mut odd = publish.clone();
        odd.buckets[0].0 = 0.001;
        other.restore_histograms(&[odd]);
        assert!(other.carry_histograms().is_empty());
    }

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
