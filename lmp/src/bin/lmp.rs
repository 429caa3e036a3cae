//! `lmp`: the Librarian Monitoring Protocol server (ReST views, dashboard, Prometheus metrics).

use clap::Parser;
use std::path::PathBuf;

/// Serves read-only views of a Librarian database over HTTP.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The Librarian's database (read only).
    #[arg(
        short = 'd',
        long = "db-file",
        alias = "db_file",
        default_value = "/var/hpetm/librarian.db"
    )]
    db_file: PathBuf,
    /// TCP port.
    #[arg(long, default_value_t = lfs_lmp::DEFAULT_PORT)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    /// FIFO that feeds the "fabric %" figure of /fab/ (the original used /tmp/fabfib.fifo).
    #[arg(long)]
    fifo: Option<PathBuf>,
    /// The Librarian's metrics URL (its --metrics-port), e.g. http://127.0.0.1:9094/metrics: request
    /// counts and latencies are then part of /metrics.
    #[arg(long)]
    librarian_metrics: Option<String>,
    /// Log file (default: standard error).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Write the pid here once listening.
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("lmp: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LMP_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false);
    match &args.log_file {
        Some(p) => builder
            .with_writer(std::sync::Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ))
            .init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
    let lmp = lfs_lmp::Lmp::new(
        args.db_file.clone(),
        args.fifo.clone(),
        args.librarian_metrics.clone(),
    )?;
    let listener = std::net::TcpListener::bind((args.bind.as_str(), args.port)).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}:{}: {e} (pick another --port)",
            args.bind,
            args.port
        )
    })?;
    listener.set_nonblocking(true)?;
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))?;
    }
    tracing::info!(
        "LMP for {} on http://{}:{}/",
        args.db_file.display(),
        args.bind,
        args.port
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            axum::serve(listener, lfs_lmp::router(lmp))
                .with_graceful_shutdown(async move {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {},
                        _ = term.recv() => {},
                    }
                })
                .await?;
            Ok(())
        })
}
