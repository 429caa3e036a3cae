//! Request counts and latencies per command, for the Librarian's Prometheus endpoint
//! (`--metrics-port`), which `lmp` can fold into its own `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds (Prometheus `le` labels).
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Default, Clone)]
struct CommandStats {
    count: u64,
    errors: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Counters shared by every connection. One short lock per reply: cheap next to a request's I/O.
#[derive(Default)]
pub struct Stats {
    commands: Mutex<BTreeMap<&'static str, CommandStats>>,
}

impl Stats {
    /// Records one answered request: its command, time from arrival to reply, and outcome.
    pub fn record(&self, command: &'static str, took: Duration, ok: bool) {
        let secs = took.as_secs_f64();
        let mut map = self.commands.lock().expect("stats lock");
        let s = map.entry(command).or_default();
        s.count += 1;
        s.errors += (!ok) as u64;
        s.sum += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.buckets[i] += 1;
            }
        }
    }

    /// Total requests answered so far.
    pub fn total(&self) -> u64 {
        self.commands
            .lock()
            .expect("stats lock")
            .values()
            .map(|s| s.count)
            .sum()
    }

    /// The Prometheus text exposition of every counter and histogram.
    pub fn prometheus(&self) -> String {
        let map = self.commands.lock().expect("stats lock").clone();
        let mut out = String::new();
        out.push_str("# HELP lfs_librarian_requests_total Requests answered, by command.\n");
        out.push_str("# TYPE lfs_librarian_requests_total counter\n");
        for (c, s) in &map {
            let _ = writeln!(
                out,
                "lfs_librarian_requests_total{{command=\"{c}\"}} {}",
                s.count
            );
        }
        out.push_str(
            "# HELP lfs_librarian_errors_total Requests answered with an error, by command.\n",
        );
        out.push_str("# TYPE lfs_librarian_errors_total counter\n");
        for (c, s) in &map {
            let _ = writeln!(
                out,
                "lfs_librarian_errors_total{{command=\"{c}\"}} {}",
                s.errors
            );
        }
        out.push_str(
            "# HELP lfs_librarian_request_seconds Time from a request's arrival to its durable reply.\n",
        );
        out.push_str("# TYPE lfs_librarian_request_seconds histogram\n");
        for (c, s) in &map {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "lfs_librarian_request_seconds_bucket{{command=\"{c}\",le=\"{le}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "lfs_librarian_request_seconds_bucket{{command=\"{c}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "lfs_librarian_request_seconds_sum{{command=\"{c}\"}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "lfs_librarian_request_seconds_count{{command=\"{c}\"}} {}",
                s.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let s = Stats::default();
        s.record("get_shelf", Duration::from_micros(80), true);
        s.record("get_shelf", Duration::from_millis(3), false);
        let text = s.prometheus();
        assert!(text.contains("lfs_librarian_requests_total{command=\"get_shelf\"} 2"));
        assert!(text.contains("lfs_librarian_errors_total{command=\"get_shelf\"} 1"));
        assert!(text.contains("le=\"0.0001\"} 1"));
        assert!(text.contains("le=\"0.005\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert_eq!(s.total(), 2);
    }
}
