//! The accept loop: one task per connection, one engine thread, a clean stop on SIGINT/SIGTERM.

use crate::connection::{self, Registry};
use crate::engine::{Engine, Job};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Serves until SIGINT or SIGTERM, then lets the engine commit what it has and stop. With
/// `metrics`, also serves the request statistics there as Prometheus text at `/metrics`.
pub async fn run(
    listener: TcpListener,
    engine: Engine,
    metrics: Option<TcpListener>,
) -> anyhow::Result<()> {
    let (jobs, rx) = std::sync::mpsc::channel::<Job>();
    let engine = Arc::new(Mutex::new(engine));
    // Requests sent to the engine thread and not yet done by it (changes run inline only at 0).
    let queued = Arc::new(AtomicUsize::new(0));
    let (shared, q) = (engine.clone(), queued.clone());
    let engine_thread = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || Engine::run(shared, rx, q))?;
    let registry = Arc::new(Registry::default());
    if let Some(m) = metrics {
        let r = registry.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let r = r.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        r.stats.prometheus(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(m, app).await {
                tracing::error!("metrics endpoint stopped: {e}");
            }
        });
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // Caught from now on: let through those held back since the start (a SIGTERM sent as soon
    // as the port answered).
    stop_signals_mask(libc::SIG_UNBLOCK);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    tracing::debug!("connection from {peer}");
                    tokio::spawn(connection::serve(
                        socket,
                        jobs.clone(),
                        engine.clone(),
                        queued.clone(),
                        registry.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("stopping: finishing queued requests");
    let _ = jobs.send(Job::Shutdown);
    let _ = tokio::task::spawn_blocking(move || engine_thread.join()).await;
    Ok(())
}

/// Holds SIGTERM and SIGINT back (pending, not lost) until [`run`] catches them. Call it before
/// binding the port and before any thread starts: the port accepts connections as soon as it is
/// bound, before the server runs, and a SIGTERM sent then (by a test, or `fame down`, as soon as
/// the port answers) would otherwise kill the process without its clean stop.
pub fn hold_stop_signals() {
    stop_signals_mask(libc::SIG_BLOCK);
}

/// Blocks or unblocks SIGTERM and SIGINT for the calling thread (and the threads it starts).
fn stop_signals_mask(how: libc::c_int) {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}
