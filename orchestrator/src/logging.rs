//! `fame`'s own log: `logs/fame.log` in the cluster directory (listed by `fame logs`), opened
//! once a command knows its cluster. Before that, and for commands without a cluster, log
//! records are dropped; the user-facing messages go to the terminal regardless.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Installs the tracing subscriber writing to the current log file. `FAME_LOG` sets the filter.
pub fn init() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("FAME_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .init();
}

/// Sends the log to `path` (appending) from now on.
pub fn open(path: &Path) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ok();
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = f;
}

/// Stops logging to the file (before the cluster directory is removed).
pub fn close() {
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
