//! The numbered steps of long commands, each shown while it runs (a spinner or a bar on a
//! terminal) and then as one line with its time. Timings are kept for `state.json` and the
//! benchmark. Without a terminal only the finished lines are printed, so logs stay readable.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM while a long command runs; its loops check [`interrupted`].
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Lets SIGINT and SIGTERM interrupt the current command cleanly (it rolls back) instead of
/// killing it halfway.
pub fn catch_interrupts() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, flag().clone());
    }
}

pub fn interrupted() -> bool {
    flag().load(Ordering::Relaxed)
}

/// Fails with a clear message if the user interrupted the command.
pub fn check_interrupt() -> anyhow::Result<()> {
    if interrupted() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

pub struct Steps {
    total: usize,
    done: usize,
    tty: bool,
    pub timings: Vec<(String, f64)>,
}

/// The step being run: its display.
pub struct Step {
    bar: ProgressBar,
    tty: bool,
}

impl Step {
    /// A step that shows nothing, for work done outside numbered steps (scenario steps).
    pub fn hidden() -> Step {
        Step {
            bar: ProgressBar::hidden(),
            tty: false,
        }
    }

    pub fn set_message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    /// Turns the spinner into a bar of `len` items (e.g. nodes).
    pub fn set_length(&self, len: u64) {
        if self.tty {
            self.bar.set_style(
                ProgressStyle::with_template("{prefix} {wide_bar} {pos}/{len} {msg} {elapsed}")
                    .expect("valid template"),
            );
        }
        self.bar.set_length(len);
    }

    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    /// Prints a line (a warning) above the display.
    pub fn println(&self, line: impl AsRef<str>) {
        if self.tty {
            self.bar.suspend(|| eprintln!("{}", line.as_ref()));
        } else {
            eprintln!("{}", line.as_ref());
        }
    }
}

impl Steps {
    pub fn new(total: usize) -> Steps {
        Steps {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            timings: vec![],
        }
    }

    /// Runs one step, showing it while it runs and its outcome and time afterwards.
    pub fn run<T>(
        &mut self,
        title: &str,
        f: impl FnOnce(&Step) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.done += 1;
        let prefix = format!("[{}/{}] {title}", self.done, self.total);
        let bar = if self.tty {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed}")
                    .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(80));
            b
        } else {
            ProgressBar::hidden()
        };
        bar.set_prefix(prefix.clone());
        let step = Step { bar, tty: self.tty };
        let start = Instant::now();
        let result = f(&step);
        let took = start.elapsed();
        step.bar.finish_and_clear();
        let mark = if result.is_ok() { "ok" } else { "FAILED" };
        eprintln!("{prefix:<44} {mark:>6} {:>10}", fmt_duration(took));
        tracing::info!("step {prefix}: {mark} in {}", fmt_duration(took));
        self.timings.push((title.to_string(), took.as_secs_f64()));
        result
    }
}
