//! `fsck-lfs`: offline consistency checker and repairer of a Librarian database.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lfs_fsck::{self as fsck, exit};

const EXIT_CODES: &str = "\
Exit codes:
  0   no problems found
  1   problems found and all of them repaired
  4   problems found and left unrepaired (report mode, or no automatic repair exists)
  8   operational error: cannot open the database, wrong schema version,
      fatal inconsistency (e.g. book count mismatch), SQL error; nothing was changed
  16  usage or syntax error

Run it only while no Librarian serves the database: every open handle is
considered stale and pending-zero shelves are finalized.";

/// Check (and with --repair fix) a Librarian (LFS) SQLite database, offline.
///
/// Without --repair the database is opened read-only and only reported on; the
/// report lists exactly what a repair would do. With --repair all fixes are
/// applied in a single transaction: either all of them or none.
#[derive(Debug, Parser)]
#[command(name = "fsck-lfs", version, after_help = EXIT_CODES)]
struct Args {
    /// Repair the problems found (default: report only)
    #[arg(short = 'y', long)]
    repair: bool,

    /// Also list the ids of every shelf and book concerned
    #[arg(short, long)]
    verbose: bool,

    /// The Librarian database file
    #[arg(value_name = "DBFILE")]
    dbfile: PathBuf,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            return ExitCode::from(code as u8);
        }
    };
    let code = match fsck::check_file(&args.dbfile, args.repair) {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            if args.verbose {
                let mode = if args.repair {
                    "repairing"
                } else {
                    "checking (read-only snapshot)"
                };
                let _ = writeln!(out, "{mode} {}", args.dbfile.display());
            }
            // A closed stdout must not turn into a panic or hide the exit code.
            let _ = out.write_all(report.render(args.verbose).as_bytes());
            let _ = out.flush();
            report.exit_code()
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "fsck-lfs: {e}");
            exit::OPERATIONAL
        }
    };
    ExitCode::from(code as u8)
}
