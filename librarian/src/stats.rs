//! Request counts and latencies per command, for the Librarian's Prometheus endpoint
//! (`--metrics-port`), which `lmp` can fold into its own `/metrics`.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};
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
        let requests = "requests_total";
        let help = "Requests answered, by command.";
        header(&mut out, requests, help, "counter");
        for (c, s) in &map {
            sample(&mut out, requests, c, "", s.count);
        }
        let errors = "errors_total";
        let help = "Requests answered with an error, by command.";
        header(&mut out, errors, help, "counter");
        for (c, s) in &map {
            sample(&mut out, errors, c, "", s.errors);
        }
        let help = "Time from a request's arrival to its durable reply.";
        header(&mut out, "request_seconds", help, "histogram");
        for (c, s) in &map {
            for (le, n) in BUCKETS.iter().zip(s.buckets) {
                let le = format!(",le=\"{le}\"");
                sample(&mut out, "request_seconds_bucket", c, &le, n);
            }
            let all = ",le=\"+Inf\"";
            sample(&mut out, "request_seconds_bucket", c, all, s.count);
            sample(&mut out, "request_seconds_sum", c, "", s.sum);
            sample(&mut out, "request_seconds_count", c, "", s.count);
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of metric `lfs_librarian_<name>`.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP lfs_librarian_{name} {help}");
    let _ = writeln!(out, "# TYPE lfs_librarian_{name} {kind}");
}

/// One sample of metric `lfs_librarian_<name>` for `command`, with the further labels `more`
/// (each with its leading comma).
fn sample(out: &mut String, name: &str, command: &str, more: &str, value: impl Display) {
    let _ = writeln!(
        out,
        "lfs_librarian_{name}{{command=\"{command}\"{more}}} {value}"
    );
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
