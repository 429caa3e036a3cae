//! `librarian`: the LFS metadata server.

use clap::Parser;
use librarian::engine::{Engine, EngineConfig};
use std::path::PathBuf;
use std::time::Duration;

/// Serves an LFS database (made by `book-register`) to the node daemons over TCP.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The database file (the original's `--db_file` is accepted too).
    #[arg(
        long = "db-file",
        alias = "db_file",
        default_value = "/var/hpetm/librarian.db"
    )]
    db_file: PathBuf,
    /// TCP port to listen on (all IPv4 interfaces unless --bind says otherwise); 0 lets the
    /// system pick a free one (see --port-file).
    #[arg(long, default_value_t = 9093)]
    port: u16,
    /// Write the port listened on here once the server listens (written whole, by a rename), so
    /// that a caller of `--port 0` learns it without racing for a free port.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    /// Log detail: 0 errors, 1 info, 2 each failed command, 3+ debug.
    #[arg(long, default_value_t = 0)]
    verbose: u8,
    /// Detach from the terminal and run in the background (logs go to --log-file).
    #[arg(long)]
    daemon: bool,
    /// Log file (default: standard error).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Write the server's pid here once it listens.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Serve request counts and latencies as Prometheus text at http://BIND:PORT/metrics.
    #[arg(long)]
    metrics_port: Option<u16>,
    /// Release a node's open files after its heartbeat has been silent this many seconds (0: never).
    #[arg(long, default_value_t = 60)]
    open_timeout: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("librarian: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let level = match args.verbose {
        0 => "error",
        1 => "info",
        2 => "info,librarian::engine=debug",
        _ => "debug",
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LIBRARIAN_LOG")
                .unwrap_or_else(|_| level.into()),
        )
        .with_ansi(false);
    match &args.log_file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
            builder.with_writer(std::sync::Mutex::new(f)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    let cfg = EngineConfig {
        open_timeout: (args.open_timeout > 0).then(|| Duration::from_secs(args.open_timeout)),
        ..EngineConfig::default()
    };
    let engine = Engine::open(&args.db_file, cfg)?;
    // From the bind on, SIGTERM and SIGINT wait for the server's clean stop (see there); before
    // it, they end a start-up that has served nothing. No thread runs yet.
    librarian::server::hold_stop_signals();
    let std_listener =
        std::net::TcpListener::bind((args.bind.as_str(), args.port)).map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}:{}: {e} (is another librarian running? pick another --port)",
                args.bind,
                args.port
            )
        })?;
    let metrics = match args.metrics_port {
        Some(port) => {
            let l = std::net::TcpListener::bind((args.bind.as_str(), port)).map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen for metrics on {}:{port}: {e} (pick another --metrics-port)",
                    args.bind
                )
            })?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    if args.daemon {
        daemonize()?;
    }
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))?;
    }
    let port = std_listener.local_addr()?.port();
    if let Some(p) = &args.port_file {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, format!("{port}\n"))
            .and_then(|()| std::fs::rename(&tmp, p))
            .map_err(|e| anyhow::anyhow!("cannot write --port-file {}: {e}", p.display()))?;
    }
    tracing::info!("serving {} on {}:{port}", args.db_file.display(), args.bind);
    std_listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let metrics = metrics.map(tokio::net::TcpListener::from_std).transpose()?;
        librarian::server::run(listener, engine, metrics).await
    })
}

/// Classic double fork, after the socket is bound so that errors still reach the terminal.
fn daemonize() -> anyhow::Result<()> {
    // SAFETY: called before any thread is started (the runtime and engine start afterwards).
    unsafe {
        match libc::fork() {
            -1 => anyhow::bail!("fork failed"),
            0 => {}
            _ => libc::_exit(0),
        }
        libc::setsid();
        match libc::fork() {
            -1 => anyhow::bail!("fork failed"),
            0 => {}
            _ => libc::_exit(0),
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
    }
    Ok(())
}
