//! `fame`: one command brings up a FAME cluster (a Librarian and LFS nodes sharing one FAM
//! file), tears it down, rebuilds and reloads it. See `fame --help` and the README.

mod backend;
mod bins;
mod cli;
mod cluster;
mod db;
mod geometry;
mod lockfile;
mod logging;
mod ops;
mod output;
mod ports;
mod procs;
mod progress;
mod proxy;
mod scenario;
mod services;
mod settings;
mod size;
mod state;

use clap::Parser;
use cli::{Cli, Cmd};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match invalid_value(&e) {
            // Bad values get fame's one line naming the input, the rule and the fix.
            // Exit codes as for any other bad input: 1, and 2 for `fame scenario` (its "bad
            // input", apart from a failed scenario).
            Some(line) => {
                eprintln!("fame: {line}");
                let scenario = std::env::args().nth(1).is_some_and(|a| a == "scenario");
                return ExitCode::from(if scenario { 2 } else { 1 });
            }
            None => e.exit(),
        },
    };
    if let Cmd::NodeInit {
        hostname,
        root,
        argv,
    } = &cli.cmd
    {
        // Runs in the node's console log; returns only if the daemon could not be started.
        let e = backend::process::init::run(hostname, root, argv).unwrap_err();
        eprintln!("fame __node-init {hostname}: {e:#}");
        return ExitCode::from(127);
    }
    if let Cmd::Proxy {
        dir,
        target,
        listen,
        nodes,
    } = &cli.cmd
    {
        return match proxy::serve(dir, *target, *listen, nodes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fame __proxy: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::AbortFuse { minors } = &cli.cmd {
        return match backend::process::init::abort_fuse(minors) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fame __abort-fuse: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::Scenario {
        cmd: cli::ScenarioCmd::Run(args),
    } = cli.cmd
    {
        // Scenario runs log per scenario into their report directory, not through `logging`.
        let code = scenario::run(args);
        return ExitCode::from(if code == 0 && output::failed() {
            1
        } else {
            code
        });
    }
    logging::init();
    let result = match cli.cmd {
        Cmd::Up(args) => settings::resolve(&args).and_then(ops::up::up).map(|()| 0),
        Cmd::Down {
            name,
            all,
            keep_fam,
        } => ops::down::down(name.as_deref(), all, keep_fam).map(|()| 0),
        Cmd::Ls => ops::status::ls().map(|()| 0),
        Cmd::Status { name } => ops::status::status(name.as_deref()).map(|()| 0),
        Cmd::Exec {
            name,
            node,
            command,
        } => ops::exec::exec(name.as_deref(), &node, command),
        Cmd::Logs { name, export } => {
            ops::logs::logs(name.as_deref(), export.as_deref()).map(|()| 0)
        }
        Cmd::Images { cmd } => ops::images::images(cmd).map(|()| 0),
        Cmd::Rebuild { name } => ops::reload::rebuild(name.as_deref()).map(|()| 0),
        Cmd::Reload { name, bin_dir } => {
            ops::reload::reload(name.as_deref(), bin_dir.as_deref()).map(|()| 0)
        }
        Cmd::Scenario { .. } | Cmd::Proxy { .. } => unreachable!("handled above"),
        Cmd::NodeInit { .. } | Cmd::AbortFuse { .. } => unreachable!("handled above"),
    };
    match result {
        // Output that could not be written is a failure too (said on stderr already).
        Ok(0) if output::failed() => ExitCode::FAILURE,
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("fame: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--backend vmware: no such value; use one of: process, libvirt, container` for a value clap
/// refused from a fixed set (a `ValueEnum`), or None for every other clap error.
fn invalid_value(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let text = |k| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let arg = text(ContextKind::InvalidArg)?;
    let flag = arg.split_whitespace().next().unwrap_or(&arg).to_string();
    let value = text(ContextKind::InvalidValue)?;
    let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) else {
        return None;
    };
    Some(format!(
        "{flag} {value}: no such value; use one of: {}",
        valid.join(", ")
    ))
}
