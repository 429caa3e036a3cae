//! Command output on stdout. A reader that goes away (`fame status | head -3`) is not an error:
//! the rest of the output is dropped and the command finishes its work as usual. Any other
//! failure to write (a full disk) is said once on stderr, and fame then exits with status 1. `println!`
//! panics there instead, since Rust ignores SIGPIPE (and fame must: it also writes to sockets).

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader has gone.
static READER_GONE: AtomicBool = AtomicBool::new(false);
/// Set when stdout failed otherwise (a full disk): the command's output is incomplete.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Whether some output could not be written for another reason than a reader that went away
/// (it was said on stderr then); `main` makes the exit status say so too.
pub fn failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}

/// Writes one line to stdout; see the module.
pub fn line(args: std::fmt::Arguments) {
    use std::io::Write;
    if READER_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}").and_then(|()| out.flush()) {
        READER_GONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("fame: cannot write to stdout: {e}");
            FAILED.store(true, Ordering::Relaxed);
        }
    }
}

/// `println!` for command output (see the module).
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
