//! `fame exec` on a container node: a Docker exec whose output goes to fame's stdout and stderr,
//! whose input is fame's stdin, and whose exit status becomes fame's.
//!
//! SIGINT, SIGTERM and SIGHUP sent to fame are passed on to the command, as they reach it on the
//! other backends (where fame becomes the command). `docker exec` does not do this: a command
//! whose client was interrupted runs on in the container.

use super::engine::{message, Engine};
use anyhow::{anyhow, Result};
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use std::ffi::OsString;
use std::io::Write;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};

/// Set in the command's environment to tell it from any other process with its pid: the engine
/// reports host pids, but a remote engine's pid means nothing here.
const EXEC_TOKEN_ENV: &str = "FAME_EXEC_TOKEN";

/// Runs `argv` in the container `name` (node `node`) and returns its exit status.
pub fn run(engine: &Engine, name: &str, node: &str, argv: &[OsString]) -> Result<i32> {
    let cmd: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let docker = engine.docker.clone();
    let token = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    engine.run(async move {
        // Before the command starts, so that a signal in between is not lost.
        let mut signals = Vec::new();
        for kind in [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ] {
            signals.push(signal(kind).map_err(|e| anyhow!("cannot catch signals: {e}"))?);
        }
        let exec = docker
            .create_exec(
                name,
                CreateExecOptions {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    cmd: Some(cmd.clone()),
                    env: Some(vec![
                        format!("{}={node}", crate::backend::process::NODE_ENV),
                        format!("{EXEC_TOKEN_ENV}={token}"),
                    ]),
                    working_dir: Some("/".to_string()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow!("{node}: cannot run {:?}: {}", cmd[0], message(&e)))?;
        let started = docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| anyhow!("{node}: cannot run {:?}: {}", cmd[0], message(&e)))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(anyhow!("{node}: the engine detached the command"));
        };
        // fame's stdin, read by a thread (a blocking read must not hold the runtime), goes to
        // the command until it ends; its end closes the command's stdin.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match std::io::Read::read(&mut std::io::stdin(), &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let pump = tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if input.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = input.shutdown().await;
        });
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        let mut command = None;
        loop {
            let caught =
                futures_util::future::select_all(signals.iter_mut().map(|s| Box::pin(s.recv())));
            let item = tokio::select! {
                item = output.next() => item,
                (_, which, _) = caught => {
                    if command.is_none() {
                        command = command_process(&docker, &exec.id, &token).await;
                    }
                    forward(command, which, node);
                    continue;
                }
            };
            let Some(item) = item else { break };
            match item.map_err(|e| anyhow!("{node}: lost the command's output: {}", message(&e)))? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    stdout.write_all(&message)?;
                    stdout.flush()?;
                }
                LogOutput::StdErr { message } => {
                    stderr.write_all(&message)?;
                    stderr.flush()?;
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        pump.abort();
        let inspect = docker.inspect_exec(&exec.id).await.map_err(|e| {
            anyhow!(
                "{node}: cannot learn how {:?} ended: {}",
                cmd[0],
                message(&e)
            )
        })?;
        // 126/127: the engine could not run it (not executable / not found), as a shell says.
        Ok(inspect.exit_code.unwrap_or(1) as i32)
    })
}

/// The exec's command, when it is a process of this host carrying `token`.
///
/// Asked again every 5 ms for up to about 2 s while the exec runs: on a loaded machine the
/// engine may not report the command's pid yet even though it has printed, and a command in the
/// middle of an execve (`sh -c '...; exec sleep 300'`) shows an empty environment for a moment
/// (fresh-clone CI runs lost a SIGINT both ways, with a single look and with 100 ms of them).
/// Only a command that is not a process of this host (a remote engine) waits that long.
async fn command_process(
    docker: &bollard::Docker,
    exec: &str,
    token: &str,
) -> Option<crate::procs::ProcRef> {
    let mark = format!("{EXEC_TOKEN_ENV}={token}");
    for _ in 0..400 {
        let info = docker.inspect_exec(exec).await.ok()?;
        if info.running == Some(false) {
            return None;
        }
        let process = info
            .pid
            .filter(|p| *p > 0)
            .and_then(|p| crate::procs::ProcRef::of(p as i32));
        if let Some(p) = process.filter(|p| crate::procs::has_env(p.pid, mark.as_bytes())) {
            return Some(p);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    None
}

/// Passes the `which`th caught signal (SIGINT, SIGTERM, SIGHUP) on to the command (never to a
/// process that took its pid after it ended: see [`ProcRef::signal`](crate::procs::ProcRef)).
fn forward(command: Option<crate::procs::ProcRef>, which: usize, node: &str) {
    use rustix::process::Signal;
    let sig = [Signal::INT, Signal::TERM, Signal::HUP][which];
    match command {
        Some(p) => {
            if !p.signal(sig) {
                tracing::warn!("{node}: cannot pass {sig:?} on to pid {}: it has ended", p.pid);
            }
        }
        None => eprintln!(
            "fame: {node}: the command is not a process of this host (a remote engine?), so the signal cannot reach it; it runs on"
        ),
    }
}
