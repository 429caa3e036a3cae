//! `lfs-bench`: a metadata load generator for the Librarian.
//!
//! Each client loops over the file life cycle a node daemon drives:
//! create, close, resize to 4 books, open, list_shelf_books, close, resize to 0, destroy —
//! and, because the resize to 0 hands the books to a zeroing shelf (as with the FUSE client's
//! `--fakezero`), also truncates that zeroing shelf to 0 and destroys it, so the pool never drains.
//! Every request is counted as an op.
//!
//! With `--spawn CONFIG` it registers the topology into a temporary database and starts `librarian`
//! itself, and reports the server's peak RSS. With `--lmp` it also starts `lmp` on that database and
//! runs two phases: the metadata load alone (the baseline), then the same load while HTTP clients
//! read LMP views; it reports LMP's throughput and p99 and the Librarian's slowdown.

use clap::Parser;
use lfs_proto::client::Client;
use lfs_proto::Command as Wire;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Librarian address (ignored with --spawn).
    #[arg(long, default_value = "127.0.0.1:9093")]
    addr: String,
    /// Register this topology into a temp database and start a librarian for the run.
    #[arg(long)]
    spawn: Option<PathBuf>,
    /// Directory holding the `librarian`, `book-register` and `lmp` binaries (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Concurrent clients (each its own connection and thread).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// How long to run (each phase).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Books per file in the resize step.
    #[arg(long, default_value_t = 4)]
    books: i64,
    /// Create this many one-book files before measuring (a pool with existing shelves).
    #[arg(long, default_value_t = 0)]
    prefill: usize,
    /// With --spawn: also start lmp and measure it under the metadata load (two phases).
    #[arg(long)]
    lmp: bool,
    /// HTTP clients reading LMP in the second phase.
    #[arg(long, default_value_t = 2)]
    http_clients: usize,
    /// LMP paths the HTTP clients read in turn.
    #[arg(long, default_values_t = ["/lmp/global/".to_string(), "/metrics".to_string()])]
    http_path: Vec<String>,
    /// With --lmp: alternate baseline and loaded phases this many times (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Total LMP requests per second across the readers (0: as fast as they can).
    #[arg(long, default_value_t = 0.0)]
    http_rate: f64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// Processes started for the run, killed when it ends.
struct Spawned {
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("lfs-bench: {e:#}");
        std::process::exit(1);
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for(addr: &str, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "{what} did not start on {addr}");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Registers `cfg`, starts the Librarian (and LMP); returns their addresses.
fn spawn(args: &Args, cfg: &Path) -> anyhow::Result<(Spawned, String, Option<String>)> {
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("librarian.db");
    let t = Instant::now();
    let out = Command::new(bin_dir.join("book-register"))
        .arg("-d")
        .arg(&db)
        .arg(cfg)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "book-register failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !args.json {
        println!(
            "registered {} in {:.3} s",
            cfg.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let port = free_port()?;
    let librarian = Command::new(bin_dir.join("librarian"))
        .arg("--db-file")
        .arg(&db)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut spawned = Spawned {
        children: vec![librarian],
        _dir: dir,
    };
    let addr = format!("127.0.0.1:{port}");
    wait_for(&addr, "librarian")?;
    let mut lmp_addr = None;
    if args.lmp {
        let port = free_port()?;
        spawned.children.push(
            Command::new(bin_dir.join("lmp"))
                .arg("-d")
                .arg(&db)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let a = format!("127.0.0.1:{port}");
        wait_for(&a, "lmp")?;
        lmp_addr = Some(a);
    }
    Ok((spawned, addr, lmp_addr))
}

/// Latencies in microseconds, sorted, with helpers for percentiles.
struct Latencies(Vec<u32>);

impl Latencies {
    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0[((self.0.len() - 1) as f64 * p) as usize] as f64 / 1000.0
    }
}

struct Phase {
    ops: Latencies,
    secs: f64,
    errors: u64,
    http: Option<Latencies>,
    http_secs: f64,
}

impl Phase {
    fn ops_per_sec(&self) -> f64 {
        self.ops.0.len() as f64 / self.secs
    }

    fn http_per_sec(&self) -> f64 {
        self.http
            .as_ref()
            .map_or(0.0, |h| h.0.len() as f64 / self.http_secs)
    }
}

/// Runs the metadata clients (and the HTTP readers, given an LMP address) for `secs`.
fn phase(
    args: &Args,
    addr: &str,
    nodes: i64,
    http: Option<&str>,
    tag: &str,
) -> anyhow::Result<Phase> {
    let stop_at = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.clients)
        .map(|i| {
            let addr = addr.to_string();
            let books = args.books;
            let tag = format!("{tag}{i}");
            std::thread::spawn(move || worker(&addr, &tag, 1 + (i as i64 % nodes), books, stop_at))
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = http
        .into_iter()
        .flat_map(|base| (0..args.http_clients).map(move |i| (base.to_string(), i)))
        .map(|(base, i)| {
            let paths = args.http_path.clone();
            let done = done.clone();
            let gap = (args.http_rate > 0.0)
                .then(|| Duration::from_secs_f64(args.http_clients as f64 / args.http_rate));
            std::thread::spawn(move || http_reader(&base, &paths, i, gap, &done))
        })
        .collect();
    let mut lat = vec![];
    let mut errors = 0u64;
    for w in workers {
        let (l, e) = w
            .join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
        lat.extend(l);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let mut http_lat: Option<Vec<u32>> = http.map(|_| vec![]);
    for r in readers {
        let l = r
            .join()
            .map_err(|_| anyhow::anyhow!("an HTTP reader panicked"))??;
        if let Some(h) = http_lat.as_mut() {
            h.extend(l);
        }
    }
    let http_secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    Ok(Phase {
        ops: Latencies(lat),
        secs,
        errors,
        http: http_lat.map(|mut h| {
            h.sort_unstable();
            Latencies(h)
        }),
        http_secs,
    })
}

/// Reads LMP views in a loop (JSON, as the dashboard does) until told to stop.
fn http_reader(
    base: &str,
    paths: &[String],
    index: usize,
    gap: Option<Duration>,
    done: &AtomicBool,
) -> anyhow::Result<Vec<u32>> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let mut lat = Vec::with_capacity(1 << 16);
    let mut n = index;
    let mut next = Instant::now();
    while !done.load(Ordering::Relaxed) {
        if let Some(gap) = gap {
            next += gap;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let path = &paths[n % paths.len()];
        n += 1;
        let t = Instant::now();
        let body = agent
            .get(&format!("http://{base}{path}"))
            .set("Accept", "application/json; version=1.0")
            .call()?
            .into_string()?;
        anyhow::ensure!(!body.is_empty(), "{path}: empty answer");
        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    Ok(lat)
}

fn prefill(addr: &str, n: usize) -> anyhow::Result<()> {
    let mut c = Client::connect(addr, 1)?;
    let book = c.call(Wire::GetFsStats, json!({}))?["book_size_bytes"]
        .as_i64()
        .unwrap_or(8 << 20);
    for i in 0..n {
        let path = format!("/prefill_{i}");
        let s = c.call(Wire::CreateShelf, json!({"path": path, "mode": 0o100644}))?;
        c.call(
            Wire::CloseShelf,
            json!({"id": s["id"], "open_handle": s["open_handle"]}),
        )?;
        c.call(
            Wire::ResizeShelf,
            json!({"path": path, "id": s["id"], "size_bytes": book, "zero_enabled": true}),
        )?;
    }
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.lmp || args.spawn.is_some(),
        "--lmp needs --spawn CONFIG (the benchmark starts lmp on the database it creates)"
    );
    let (spawned, addr, lmp_addr) = match &args.spawn {
        Some(cfg) => {
            let (s, a, l) = spawn(&args, cfg)?;
            (Some(s), a, l)
        }
        None => (None, args.addr.clone(), None),
    };
    let nodes = Client::connect(&addr, 1)?.call(Wire::GetFsStats, json!({}))?["nodes_total"]
        .as_i64()
        .unwrap_or(1);
    prefill(&addr, args.prefill)?;
    // With LMP, baseline and loaded phases alternate `--rounds` times and the median of each is
    // kept, so that drift of the machine during the run does not pass for LMP's cost.
    let rounds = if lmp_addr.is_some() {
        args.rounds.max(1)
    } else {
        1
    };
    let mut bases = vec![];
    let mut loads = vec![];
    for r in 0..rounds {
        bases.push(phase(&args, &addr, nodes, None, &format!("a{r}_"))?);
        if let Some(l) = &lmp_addr {
            loads.push(phase(&args, &addr, nodes, Some(l), &format!("b{r}_"))?);
        }
    }
    let median = |mut v: Vec<Phase>| -> Option<Phase> {
        v.sort_by(|a, b| a.ops_per_sec().total_cmp(&b.ops_per_sec()));
        let mid = v.len() / 2;
        v.into_iter().nth(mid)
    };
    let base = median(bases).expect("at least one round");
    let loaded = median(loads);
    let rss = spawned
        .as_ref()
        .and_then(|s| peak_rss_kib(s.children[0].id()));
    let errors = base.errors + loaded.as_ref().map_or(0, |l| l.errors);
    if args.json {
        let mut v = json!({"clients": args.clients, "ops": base.ops.0.len(), "seconds": base.secs,
            "ops_per_sec": base.ops_per_sec(), "p50_ms": base.ops.pct(0.5), "p99_ms": base.ops.pct(0.99),
            "errors": errors, "server_peak_rss_kib": rss});
        if let Some(l) = &loaded {
            v["with_lmp"] = json!({"ops_per_sec": l.ops_per_sec(), "p99_ms": l.ops.pct(0.99),
                "librarian_ratio": l.ops_per_sec() / base.ops_per_sec(),
                "http_per_sec": l.http_per_sec(), "http_p50_ms": l.http.as_ref().map(|h| h.pct(0.5)),
                "http_p99_ms": l.http.as_ref().map(|h| h.pct(0.99))});
        }
        println!("{v}");
    } else {
        println!(
            "{} clients: {} ops in {:.2} s = {:.0} ops/s, p50 {:.3} ms, p99 {:.3} ms, errors {errors}{}",
            args.clients,
            base.ops.0.len(),
            base.secs,
            base.ops_per_sec(),
            base.ops.pct(0.5),
            base.ops.pct(0.99),
            rss.map(|r| format!(", server peak RSS {:.1} MiB", r as f64 / 1024.0))
                .unwrap_or_default()
        );
        if let Some(l) = &loaded {
            let h = l.http.as_ref().expect("loaded phase has HTTP figures");
            println!(
                "with {} LMP readers ({}{}): librarian {:.0} ops/s (x{:.3} of the baseline), p99 {:.3} ms; \
                 LMP {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                args.http_clients,
                args.http_path.join(" "),
                if args.http_rate > 0.0 { format!(", {} req/s in all", args.http_rate) } else { String::new() },
                l.ops_per_sec(),
                l.ops_per_sec() / base.ops_per_sec(),
                l.ops.pct(0.99),
                l.http_per_sec(),
                h.pct(0.5),
                h.pct(0.99)
            );
        }
    }
    anyhow::ensure!(errors == 0, "{errors} operations failed");
    Ok(())
}

/// One client's loop; returns per-op latencies in microseconds and the error count.
fn worker(
    addr: &str,
    index: &str,
    node_id: i64,
    books: i64,
    stop_at: Instant,
) -> anyhow::Result<(Vec<u32>, u64)> {
    let mut c = Client::connect(addr, node_id)?;
    let (enc, node) = ((node_id - 1) / 10 + 1, (node_id - 1) % 10 + 1);
    c.set_context("physloc", json!(format!("1_{enc}_{node}")));
    let mut lat = Vec::with_capacity(1 << 20);
    let mut errors = 0;
    let mut n = 0u64;
    let book_size = c.call(Wire::GetFsStats, json!({}))?["book_size_bytes"]
        .as_i64()
        .unwrap_or(8 << 20);
    let mut timed = |c: &mut Client, cmd: Wire, p: Value| -> Option<Value> {
        let t = Instant::now();
        let r = c.call(cmd, p);
        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                errors += 1;
                eprintln!("client {index}: {cmd}: {e}");
                None
            }
        }
    };
    while Instant::now() < stop_at {
        n += 1;
        let path = format!("/bench_{index}_{n}");
        let Some(s) = timed(
            &mut c,
            Wire::CreateShelf,
            json!({"path": path, "mode": 0o100644}),
        ) else {
            continue;
        };
        let id = s["id"].as_i64().unwrap_or(0);
        let h = s["open_handle"].clone();
        timed(
            &mut c,
            Wire::CloseShelf,
            json!({"id": id, "open_handle": h}),
        );
        timed(
            &mut c,
            Wire::ResizeShelf,
            json!({"path": path, "id": id, "size_bytes": books * book_size, "zero_enabled": true}),
        );
        let h = timed(&mut c, Wire::OpenShelf, json!({"path": path}))
            .map(|v| v["open_handle"].clone())
            .unwrap_or(Value::Null);
        timed(&mut c, Wire::ListShelfBooks, json!({"path": path}));
        timed(
            &mut c,
            Wire::CloseShelf,
            json!({"id": id, "open_handle": h}),
        );
        let z = timed(
            &mut c,
            Wire::ResizeShelf,
            json!({"path": path, "id": id, "size_bytes": 0, "zero_enabled": true}),
        );
        timed(&mut c, Wire::DestroyShelf, json!({"path": path}));
        if let Some(zpath) = z.and_then(|z| z["z_shelf_path"].as_str().map(String::from)) {
            // The zeroing step itself is a node's FAM write, not a metadata op; as with --fakezero
            // the node then frees the books and removes the zeroing shelf.
            if let Some(zs) = timed(&mut c, Wire::GetShelf, json!({"path": zpath})) {
                let zid = zs["id"].as_i64().unwrap_or(0);
                timed(
                    &mut c,
                    Wire::ResizeShelf,
                    json!({"path": zpath, "id": zid, "size_bytes": 0, "zero_enabled": true}),
                );
                timed(&mut c, Wire::DestroyShelf, json!({"path": zpath}));
            }
        }
    }
    Ok((lat, errors))
}
