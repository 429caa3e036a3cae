//! Headless Chromium for the LMP dashboard tests: Debian's `chromium`, installed by
//! scripts/setup.sh. The librarian crate's tests compile this file too, by path (`#[path]`),
//! since that crate cannot depend on this one (this one depends on it); so it uses std only.

use std::path::Path;
use std::process::Command;

/// Loads `url` in headless Chromium, with a window of `window` ("W,H") and `profile` as its user
/// data directory, plus `extra` flags (`--dump-dom`, `--screenshot=PATH`); returns its stdout.
/// The page's own scripts get 4 s of virtual time; nothing reaches beyond loopback.
pub fn load(url: &str, profile: &Path, window: &str, extra: &[String]) -> String {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is not installed: run scripts/setup.sh (it installs Debian's chromium)");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--window-size={window}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("cannot run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
