//! The webhook's Prometheus text: reviews by result and mode, and a duration histogram.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 8] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];

#[derive(Default)]
struct Counts {
    reviews: BTreeMap<(&'static str, String), u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct WebhookMetrics(Mutex<Counts>);

impl WebhookMetrics {
    /// Counts one review: `result` is mutated, unchanged, denied or invalid; `modes` the modes
    /// applied ("none" when none).
    pub fn record(&self, result: &'static str, modes: String, took: Duration) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *c.reviews.entry((result, modes)).or_default() += 1;
        let secs = took.as_secs_f64();
        for (bound, n) in BUCKETS.iter().zip(c.buckets.iter_mut()) {
            if secs <= *bound {
                *n += 1;
            }
        }
        c.count += 1;
        c.sum += secs;
    }

    pub fn render(&self) -> String {
        let c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP secrets_agent_webhook_admissions_total Admission reviews answered, by result and mode.\n\
             # TYPE secrets_agent_webhook_admissions_total counter"
        );
        for ((result, modes), n) in &c.reviews {
            let _ = writeln!(
                out,
                "secrets_agent_webhook_admissions_total{{result=\"{result}\",mode=\"{modes}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP secrets_agent_webhook_admission_duration_seconds Time to answer one review.\n\
             # TYPE secrets_agent_webhook_admission_duration_seconds histogram"
        );
        for (bound, n) in BUCKETS.iter().zip(c.buckets.iter()) {
            let _ = writeln!(
                out,
                "secrets_agent_webhook_admission_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "secrets_agent_webhook_admission_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
             secrets_agent_webhook_admission_duration_seconds_sum {}\n\
             secrets_agent_webhook_admission_duration_seconds_count {}",
            c.count, c.sum, c.count
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets() {
        let m = WebhookMetrics::default();
        m.record("mutated", "env,sidecar".into(), Duration::from_micros(300));
        m.record("mutated", "env,sidecar".into(), Duration::from_millis(3));
        m.record("invalid", "none".into(), Duration::from_secs(1));
        let text = m.render();
        assert!(text.contains(
            "secrets_agent_webhook_admissions_total{result=\"mutated\",mode=\"env,sidecar\"} 2"
        ));
        assert!(text.contains("_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("_count 3"));
    }
}
