//! `/metrics`: what the server counts, in Prometheus text (`prometheus-client`): requests by
//! route and status, run latency, model batch sizes, feedback by key, store write latency,
//! runs waiting or running, and what retention removed.
//!
//! Label values come from bounded sets only (route templates, statuses, declared feedback keys,
//! loaded models), so a client cannot grow the series without bound.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::runtime::Engine;

type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn store_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The server's metrics, registered once; cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    run_seconds: Histogram,
    feedback: Family<Labels, Counter>,
    store_write_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    runs_in_flight: Gauge,
    prefill_batch: Family<Labels, Gauge<f64, AtomicU64>>,
    decode_batch: Family<Labels, Gauge<f64, AtomicU64>>,
    forward_passes: Family<Labels, Gauge>,
    retention_removed: Counter,
    retention_failures: Counter,
    learner_turns: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric, registered under the `loopc_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("loopc");
        let requests = Family::<Labels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route template and status", requests.clone());
        let run_seconds = latency_histogram();
        registry.register("run_seconds", "Wall time of program runs served (model and tools, not the store)", run_seconds.clone());
        let feedback = Family::<Labels, Counter>::default();
        registry.register("feedback", "Feedback stored, by key (repeats of a client id are not counted)", feedback.clone());
        let store_write_seconds = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(store_histogram);
        registry.register("store_write_seconds", "Store write latency until commit, by operation (run, feedback)", store_write_seconds.clone());
        let runs_in_flight = Gauge::default();
        registry.register("runs_in_flight", "Runs being served now", runs_in_flight.clone());
        let prefill_batch = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register("model_prefill_batch_mean", "Mean rows per prefill pass of each local model since start", prefill_batch.clone());
        let decode_batch = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register("model_decode_batch_mean", "Mean sequences per decode step of each local model since start", decode_batch.clone());
        let forward_passes = Family::<Labels, Gauge>::default();
        registry.register("model_forward_passes", "Forward passes run by each local model since start", forward_passes.clone());
        let retention_removed = Counter::default();
        registry.register("retention_removed_runs", "Runs deleted by --retain-days", retention_removed.clone());
        let retention_failures = Counter::default();
        registry.register("retention_failures", "Retention passes that failed (the store was unreachable)", retention_failures.clone());
        let learner_turns = Family::<Labels, Counter>::default();
        registry.register(
            "learner_turns",
            "Turns of the background learner, by what happened (idle, waiting, rejected, promoted, canary_started, canary_promoted, error...)",
            learner_turns.clone(),
        );
        Metrics {
            registry,
            requests,
            run_seconds,
            feedback,
            store_write_seconds,
            runs_in_flight,
            prefill_batch,
            decode_batch,
            forward_passes,
            retention_removed,
            retention_failures,
            learner_turns,
        }
    }

    /// Counts a turn of the background learner by its outcome's label
    /// ([`super::LearnerTurn::label`], or `error`).
    pub fn learner(&self, outcome: &'static str) {
        self.learner_turns.get_or_create(&vec![("outcome", outcome.to_string())]).inc();
    }

    /// Counts a request answered on `route` (a route template) with `status`.
    pub fn request(&self, route: &str, status: u16) {
        self.requests.get_or_create(&vec![("route", route.to_string()), ("status", status.to_string())]).inc();
    }

    /// Records how long a run took.
    pub fn run_took(&self, seconds: f64) {
        self.run_seconds.observe(seconds);
    }

    /// Counts stored feedback under `key`.
    pub fn feedback_stored(&self, key: &str) {
        self.feedback.get_or_create(&vec![("key", key.to_string())]).inc();
    }

    /// Records a store write of `op` (`run` or `feedback`).
    pub fn store_write(&self, op: &'static str, seconds: f64) {
        self.store_write_seconds.get_or_create(&vec![("op", op.to_string())]).observe(seconds);
    }

    /// The gauge of runs being served.
    pub fn runs_in_flight(&self) -> &Gauge {
        &self.runs_in_flight
    }

    /// Records what one retention pass removed, or that it failed.
    pub fn retention(&self, removed_runs: Option<u64>) {
        match removed_runs {
            Some(n) => {
                self.retention_removed.inc_by(n);
            }
            None => {
                self.retention_failures.inc();
            }
        }
    }

    /// The metrics in Prometheus text format, with the engine's model figures read now.
    pub fn render(&self, engine: &Engine) -> String {
        for (name, s) in engine.model_stats() {
            let labels = vec![("model", name)];
            let prefill_passes = s.forward_passes.saturating_sub(s.decode_steps);
            self.prefill_batch.get_or_create(&labels).set(ratio(s.prefill_rows, prefill_passes));
            self.decode_batch.get_or_create(&labels).set(ratio(s.decode_rows, s.decode_steps));
            self.forward_passes.get_or_create(&labels).set(i64::try_from(s.forward_passes).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_as_prometheus_text_with_their_labels() {
        let m = Metrics::new();
        m.request("/v1/run", 200);
        m.request("/v1/run", 200);
        m.feedback_stored("thumbs");
        m.store_write("feedback", 0.0004);
        m.run_took(0.2);
        let engine = crate::runtime::Engine::builder()
            .options(crate::runtime::EngineOptions { cache_root: Some(std::env::temp_dir()), ..Default::default() })
            .build()
            .unwrap();
        let text = m.render(&engine);
        assert!(text.contains(r#"loopc_http_requests_total{route="/v1/run",status="200"} 2"#), "{text}");
        assert!(text.contains(r#"loopc_feedback_total{key="thumbs"} 1"#), "{text}");
        assert!(text.contains(r#"loopc_store_write_seconds_count{op="feedback"} 1"#), "{text}");
        assert!(text.contains("loopc_run_seconds_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
