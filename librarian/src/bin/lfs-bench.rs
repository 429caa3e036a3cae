//! `lfs-bench`: a metadata load generator for the Librarian.
//!
//! Each client loops over the file life cycle a node daemon drives:
//! create, close, resize to 4 books, open, list_shelf_books, close, resize to 0, destroy —
//! and, because the resize to 0 hands the books to a zeroing shelf (as with the FUSE client's
//! `--fakezero`), also truncates that zeroing shelf to 0 and destroys it, so the pool never drains.
//! Every request is counted as an op. With `--spawn CONFIG` it registers the topology into a
//! temporary database and starts `librarian` itself, and reports the server's peak RSS.

use clap::Parser;
use librarian::client::Client;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
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
    /// Directory holding the `librarian` and `book-register` binaries (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Concurrent clients (each its own connection and thread).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// How long to run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Books per file in the resize step.
    #[arg(long, default_value_t = 4)]
    books: i64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

struct Spawned {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn run(args: Args) -> anyhow::Result<()> {
    let mut addr = args.addr.clone();
    let mut spawned = None;
    if let Some(cfg) = &args.spawn {
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
        let register_secs = t.elapsed().as_secs_f64();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(bin_dir.join("librarian"))
            .arg("--db-file")
            .arg(&db)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "librarian did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        if !args.json {
            println!("registered {} in {register_secs:.3} s", cfg.display());
        }
        spawned = Some(Spawned { child, _dir: dir });
    }

    let nodes = {
        let mut c = Client::connect(&addr, 1)?;
        c.call("get_fs_stats", json!({}))?["nodes_total"]
            .as_i64()
            .unwrap_or(1)
    };
    let stop_at = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.clients)
        .map(|i| {
            let addr = addr.clone();
            let books = args.books;
            std::thread::spawn(move || worker(&addr, i, 1 + (i as i64 % nodes), books, stop_at))
        })
        .collect();
    let mut lat: Vec<u32> = vec![];
    let mut errors = 0u64;
    for w in workers {
        let (l, e) = w
            .join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
        lat.extend(l);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0
        }
    };
    let ops = lat.len() as f64 / secs;
    let rss = spawned.as_ref().and_then(|s| peak_rss_kib(s.child.id()));
    if args.json {
        println!(
            "{}",
            json!({"clients": args.clients, "ops": lat.len(), "seconds": secs, "ops_per_sec": ops,
                   "p50_ms": pct(0.5), "p99_ms": pct(0.99), "errors": errors, "server_peak_rss_kib": rss})
        );
    } else {
        println!(
            "{} clients: {} ops in {secs:.2} s = {ops:.0} ops/s, p50 {:.3} ms, p99 {:.3} ms, errors {errors}{}",
            args.clients,
            lat.len(),
            pct(0.5),
            pct(0.99),
            rss.map(|r| format!(", server peak RSS {:.1} MiB", r as f64 / 1024.0))
                .unwrap_or_default()
        );
    }
    anyhow::ensure!(errors == 0, "{errors} operations failed");
    Ok(())
}

/// One client's loop; returns per-op latencies in microseconds and the error count.
fn worker(
    addr: &str,
    index: usize,
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
    let book_size = c.call("get_fs_stats", json!({}))?["book_size_bytes"]
        .as_i64()
        .unwrap_or(8 << 20);
    let mut timed = |c: &mut Client, cmd: &str, p: Value| -> Option<Value> {
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
            "create_shelf",
            json!({"path": path, "mode": 0o100644}),
        ) else {
            continue;
        };
        let id = s["id"].as_i64().unwrap_or(0);
        let h = s["open_handle"].clone();
        timed(&mut c, "close_shelf", json!({"id": id, "open_handle": h}));
        timed(
            &mut c,
            "resize_shelf",
            json!({"path": path, "id": id, "size_bytes": books * book_size, "zero_enabled": true}),
        );
        let h = timed(&mut c, "open_shelf", json!({"path": path}))
            .map(|v| v["open_handle"].clone())
            .unwrap_or(Value::Null);
        timed(&mut c, "list_shelf_books", json!({"path": path}));
        timed(&mut c, "close_shelf", json!({"id": id, "open_handle": h}));
        let z = timed(
            &mut c,
            "resize_shelf",
            json!({"path": path, "id": id, "size_bytes": 0, "zero_enabled": true}),
        );
        timed(&mut c, "destroy_shelf", json!({"path": path}));
        if let Some(zpath) = z.and_then(|z| z["z_shelf_path"].as_str().map(String::from)) {
            // The zeroing step itself is a node's FAM write, not a metadata op; as with --fakezero
            // the node then frees the books and removes the zeroing shelf.
            if let Some(zs) = timed(&mut c, "get_shelf", json!({"path": zpath})) {
                let zid = zs["id"].as_i64().unwrap_or(0);
                timed(
                    &mut c,
                    "resize_shelf",
                    json!({"path": zpath, "id": zid, "size_bytes": 0, "zero_enabled": true}),
                );
                timed(&mut c, "destroy_shelf", json!({"path": zpath}));
            }
        }
    }
    Ok((lat, errors))
}
