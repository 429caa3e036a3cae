//! `book-register`: validate a topology config (INI or TMCF JSON) and create the Librarian
//! database for it.
//!
//! ```text
//! book-register [-h] [-f] [-d DFILE] [-j] [-v VERBOSE] cfile
//! ```
//!
//! Unlike the original `book_register.py`, which silently built an in-memory database when no
//! `-d` was given, this only validates the config then (and says so).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use lfs_topology::{Error, SourceFormat, Topology};

#[derive(Parser, Debug)]
#[command(
    name = "book-register",
    about = "Create database and populate books from a .ini or .json topology file",
    after_help = "Without -d the config is only validated. Sizes take K/M/G/T suffixes (binary) or B (books)."
)]
struct Args {
    /// Book configuration file (.ini or TMCF .json format)
    cfile: PathBuf,
    /// Force overwrite of the given database file
    #[arg(short = 'f')]
    force: bool,
    /// Database file to create (omit it to only validate the config)
    #[arg(short = 'd', value_name = "DFILE")]
    dfile: Option<PathBuf>,
    /// For INI files, emit the equivalent TMCF JSON to stdout
    #[arg(short = 'j')]
    json: bool,
    /// Verbose output (1: totals and PHYSADDR ranges and phase times; 2: every node, MC and book)
    #[arg(short = 'v', value_name = "VERBOSE", default_value_t = 0)]
    verbose: u32,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("book-register: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let start = Instant::now();
    // With -j, stdout carries only the JSON document.
    let mut info: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };

    if let Some(d) = &args.dfile {
        if d.as_os_str() != ":memory:" && !args.force && std::fs::symlink_metadata(d).is_ok() {
            return Err(Error::DbExists(d.clone()).to_string());
        }
    }
    if !args.cfile.exists() {
        return Err(format!("\"{}\" not found", args.cfile.display()));
    }

    let t = Instant::now();
    let topo = Topology::from_file(&args.cfile).map_err(|e| e.to_string())?;
    let parse_time = t.elapsed();
    if !topo.warnings.is_empty() {
        // The original lists every one; keep it short unless asked for details.
        let limit = if args.verbose > 0 { usize::MAX } else { 3 };
        let mut lines: Vec<&str> = topo
            .warnings
            .iter()
            .take(limit)
            .map(String::as_str)
            .collect();
        let more;
        if topo.warnings.len() > limit {
            more = format!(
                "... and {} more (-v 1 lists them all)",
                topo.warnings.len() - limit
            );
            lines.push(&more);
        }
        eprintln!(
            "book-register: warning: {}: added missing attribute(s) (defaults used):\n  {}",
            args.cfile.display(),
            lines.join("\n  ")
        );
    }
    let format = match topo.format {
        SourceFormat::Ini => "INI",
        SourceFormat::Json => "TMCF JSON",
    };
    if args.verbose > 0 {
        let _ = writeln!(info, "{}: {format} topology", args.cfile.display());
        // Level 2 lists every book: buffer it.
        let mut buf = std::io::BufWriter::new(&mut info);
        topo.write_verbose(args.verbose, &mut buf)
            .map_err(|e| format!("cannot write verbose output: {e}"))?;
    }

    if args.json {
        match topo.to_tmcf_json() {
            Some(json) => {
                let mut out = std::io::stdout().lock();
                out.write_all(json.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("cannot write JSON to stdout: {e}"))?;
            }
            None => eprintln!("book-register: warning: -j only applies to INI files; ignored"),
        }
    }

    let result = match &args.dfile {
        None => {
            let _ = writeln!(info, "valid: {}", topo.summary());
            let _ = writeln!(
                info,
                "no database written (validation only): pass -d DFILE to create one, e.g. book-register -d /var/hpetm/librarian.db {}",
                args.cfile.display()
            );
            None
        }
        Some(d) => {
            if args.force && args.verbose > 0 && d.exists() {
                let _ = writeln!(info, "replacing existing {}", d.display());
            }
            let report = topo.create_db(d, args.force).map_err(|e| e.to_string())?;
            let _ = writeln!(info, "created {}: {}", d.display(), topo.summary());
            Some(report)
        }
    };
    if args.force && args.dfile.is_none() {
        eprintln!("book-register: warning: -f has no effect without -d");
    }

    if args.verbose > 0 {
        let mut phases = vec![format!("parse+validate {}", ms(parse_time))];
        if let Some(r) = &result {
            phases.extend(r.phases.iter().map(|(p, d)| format!("{p} {}", ms(*d))));
        }
        let _ = writeln!(
            info,
            "time: {}; total {}",
            phases.join(", "),
            ms(start.elapsed())
        );
    }
    let _ = info.flush();
    Ok(())
}
