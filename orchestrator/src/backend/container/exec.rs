//! `fame exec` on a container node: a Docker exec whose output goes to fame's stdout and stderr,
//! whose input is fame's stdin, and whose exit status becomes fame's.

use super::engine::{message, Engine};
use anyhow::{anyhow, Result};
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use std::ffi::OsString;
use std::io::Write;
use tokio::io::AsyncWriteExt;

/// Runs `argv` in the container `name` (node `node`) and returns its exit status.
pub fn run(engine: &Engine, name: &str, node: &str, argv: &[OsString]) -> Result<i32> {
    let cmd: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let docker = engine.docker.clone();
    engine.run(async move {
        let exec = docker
            .create_exec(
                name,
                CreateExecOptions {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    cmd: Some(cmd.clone()),
                    env: Some(vec![format!(
                        "{}={node}",
                        crate::backend::process::NODE_ENV
                    )]),
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
        while let Some(item) = output.next().await {
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
