//! Node status for the Librarian (spec §4): real CPU, root file system, network and memory figures
//! from /proc, sent every 10 s; orphaned zombie books are collected for zeroing on the same tick.

use crate::fam::Fam;
use crate::link::Link;
use crate::zeroing::Zeroer;
use lfs_proto::request::UpdateNodeSocStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PERIOD: Duration = Duration::from_secs(10);

/// Counters sampled at one instant.
#[derive(Clone, Copy, Default)]
struct Sample {
    cpu_busy: u64,
    cpu_total: u64,
    net_bytes_in: u64,
    net_bytes_out: u64,
}

fn sample() -> Sample {
    let mut s = Sample::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            s.cpu_total = v.iter().take(8).sum();
            s.cpu_busy = s.cpu_total.saturating_sub(idle);
        }
    }
    if let Ok(dev) = std::fs::read_to_string("/proc/net/dev") {
        for line in dev.lines().skip(2) {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            if name.trim() == "lo" {
                continue;
            }
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            s.net_bytes_in += v.first().copied().unwrap_or(0);
            s.net_bytes_out += v.get(8).copied().unwrap_or(0);
        }
    }
    s
}

fn mem_percent() -> i64 {
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    let field = |k: &str| {
        info.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = field("MemTotal:");
    let avail = field("MemAvailable:");
    ((total - avail.min(total)) * 100)
        .checked_div(total)
        .unwrap_or(0) as i64
}

fn rootfs_percent() -> i64 {
    match nix::sys::statvfs::statvfs("/") {
        Ok(v) if v.blocks() > 0 => ((v.blocks() - v.blocks_free()) * 100 / v.blocks()) as i64,
        _ => 0,
    }
}

/// Tracks the previous sample to turn counters into rates.
pub struct Status {
    last: Sample,
    at: Instant,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            last: sample(),
            at: Instant::now(),
        }
    }
}

impl Status {
    /// The `update_node_soc_status` request for ACTIVE, from the counters since the last call.
    pub fn active(&mut self) -> UpdateNodeSocStatus {
        let now = sample();
        let secs = self.at.elapsed().as_secs_f64().max(0.001);
        let total = now.cpu_total.saturating_sub(self.last.cpu_total);
        let cpu = (now.cpu_busy.saturating_sub(self.last.cpu_busy) * 100)
            .checked_div(total)
            .unwrap_or(0);
        let rate = |a: u64, b: u64| (a.saturating_sub(b) as f64 / secs) as i64;
        let req = UpdateNodeSocStatus {
            status: 1,
            cpu_percent: cpu as i64,
            rootfs_percent: rootfs_percent(),
            network_in: rate(now.net_bytes_in, self.last.net_bytes_in),
            network_out: rate(now.net_bytes_out, self.last.net_bytes_out),
            mem_percent: mem_percent(),
        };
        self.last = now;
        self.at = Instant::now();
        req
    }
}

/// Runs until `stop`: a status update, a zombie collection and a release of resident FAM pages
/// every [`PERIOD`].
pub fn spawn(
    link: Arc<Link>,
    zeroer: Zeroer,
    fam: Arc<Fam>,
    mut status: Status,
    stop: Arc<AtomicBool>,
) {
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            let mut next = Instant::now() + PERIOD;
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                next = Instant::now() + PERIOD;
                if let Err(e) = link.call(&status.active()) {
                    tracing::warn!("heartbeat failed: {e}");
                }
                zeroer.collect_zombies(&link);
                fam.drop_resident();
            }
        })
        .expect("spawn heartbeat thread");
}
