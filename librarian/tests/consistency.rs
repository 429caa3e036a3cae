//! A stateful property test of the Librarian: random sequences of valid and mutated requests from
//! several clients, against a real `librarian` on a real socket. Every few thousand requests the
//! server is stopped and `fsck-lfs` checks the database: it may find only soft state (opens of
//! nodes that are still alive, zombie books waiting to be zeroed, pending-zero shelves), never
//! anything a repair would have to invent or guess. Then the server starts again on the same
//! database, which also checks that what it wrote loads back.
//!
//! Reproducible from the seed it prints: `LFS_PROPTEST_SEED=<seed>`. `LFS_PROPTEST_SECS` sets how
//! long each test runs (the normal suite: a few seconds each; a long run: see the README).
//!
//! - `one_driver_many_clients`: one thread drives several connections (node ids 1..4), one request
//!   in flight at a time except pipelined bursts on one connection, so a seed replays exactly.
//! - `concurrent_clients`: one thread per client, each its own stream from `seed + i`. The server
//!   sees real concurrency; a seed replays each client's stream, the interleaving is the server's.

use lfs_fsck::{self as fsck, Problem};
use lfs_proto::client::Client;
use lfs_test_support::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

const BOOK: i64 = 8 << 20;
/// Requests between two fsck checks.
const WINDOW: usize = 2_000;
/// How many of the latest requests a failure prints.
const SHOWN: usize = 60;

fn seed() -> u64 {
    std::env::var("LFS_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

fn budget(default_secs: u64) -> Duration {
    Duration::from_secs(
        std::env::var("LFS_PROPTEST_SECS")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(default_secs),
    )
}

// ---- the generator ----

/// Path components, most of them ordinary so that requests often meet existing names.
const NAMES: &[&str] = &[
    "a",
    "b",
    "c",
    "d",
    "a",
    "b",
    "f1",
    "f2",
    "lost+found",
    ".lfs_pending_zero_x",
    ".tmfs_hidden1",
    ".",
    "..",
    "",
    "é",
    "nul\u{0}",
    "sp ace",
];

const XATTRS: &[&str] = &[
    "user.x",
    "user.y",
    "user.LFS.AllocationPolicy",
    "user.LFS.InterleaveRequest",
    "user.LFS.InterleaveRequestPos",
    "user.LFS.AllocationPolicyDefault",
    "user.LFS.AllocationPolicyList",
    "user.LFS.Interleave",
    "user.LFS.Layout",
    "user.LFS.a.b",
    "trusted.z",
    "noprefix",
];

const MODES: &[i64] = &[
    0,
    0o644,
    0o100644,
    0o100755,
    0o40755,
    0o120777,
    0o60644,
    0o20644,
    0o10644,
    0o140755,
    0o170777,
    -1,
    0o7777777,
    i64::MAX,
];

const COMMANDS: &[&str] = &[
    "create_shelf",
    "create_shelf",
    "create_shelf",
    "open_shelf",
    "close_shelf",
    "close_shelf",
    "get_shelf",
    "list_shelf_books",
    "list_shelves",
    "resize_shelf",
    "resize_shelf",
    "resize_shelf",
    "rename_shelf",
    "rename_shelf",
    "destroy_shelf",
    "destroy_shelf",
    "mkdir",
    "mkdir",
    "rmdir",
    "symlink",
    "readlink",
    "set_am_time",
    "chmod",
    "get_xattr",
    "list_xattrs",
    "set_xattr",
    "set_xattr",
    "remove_xattr",
    "get_shelf_path",
    "get_book",
    "get_book_ig",
    "get_book_info_all",
    "kill_zombie_books",
    "update_node_soc_status",
    "update_node_mc_status",
    "send_OOB",
    "get_fs_stats",
    "version",
    "list_open_shelves",
    "get_shelf_zaddr",
    "no_such_command",
];

/// What a client learned from replies: shelf ids by path, its open handles, and the paths of the
/// zeroing shelves the server named (no generated name can hit those).
#[derive(Default)]
struct Memory {
    ids: HashMap<String, i64>,
    handles: Vec<(i64, i64)>,
    zeroing: Vec<String>,
}

struct Gen {
    rng: StdRng,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.rng.gen_range(0..xs.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    fn path(&mut self, mem: &Memory) -> String {
        if !mem.zeroing.is_empty() && self.chance(0.15) {
            return self.pick(&mem.zeroing).clone();
        }
        let depth = self.rng.gen_range(0..4);
        let mut comps: Vec<String> = (0..depth).map(|_| self.pick(NAMES).to_string()).collect();
        if self.chance(0.01) {
            comps.push("x".repeat(self.rng.gen_range(250..300)));
        }
        let sep = if self.chance(0.05) { "//" } else { "/" };
        let lead = if self.chance(0.9) { "/" } else { "" };
        format!("{lead}{}", comps.join(sep))
    }

    fn size(&mut self) -> i64 {
        match self.rng.gen_range(0..10) {
            0 => 0,
            1 => self.rng.gen_range(1..BOOK),
            2 => BOOK,
            3 => BOOK + 1,
            4 => self.rng.gen_range(1..5) * BOOK,
            5 => self.rng.gen_range(0..40) * BOOK + self.rng.gen_range(0..2),
            6 => -1,
            7 => i64::MAX,
            8 => 1 << 45,
            _ => self.rng.gen_range(0..3 * BOOK),
        }
    }

    fn interleave(&mut self) -> String {
        (0..self.rng.gen_range(0..5))
            .map(|_| char::from_u32(self.rng.gen_range(0..6)).unwrap())
            .collect()
    }

    fn xattr_value(&mut self, name: &str) -> Value {
        match name {
            "user.LFS.AllocationPolicy" | "user.LFS.AllocationPolicyDefault" => {
                json!(self.pick(&librarian::policy::POLICIES[..]).to_string())
            }
            "user.LFS.InterleaveRequest" => json!(self.interleave()),
            _ => json!(self.pick(&["", "v", "value with spaces", "ü"]).to_string()),
        }
    }

    /// An id for `path`: the one last seen for it, or one of any known shelf, or a small number.
    fn id(&mut self, mem: &Memory, path: &str) -> i64 {
        if let (Some(&id), true) = (mem.ids.get(path), self.chance(0.8)) {
            return id;
        }
        if !mem.ids.is_empty() && self.chance(0.5) {
            let ids: Vec<i64> = mem.ids.values().copied().collect();
            return *self.pick(&ids);
        }
        self.rng.gen_range(-1..40)
    }

    /// A valid request for `command`: the parameters of the right names and types.
    fn params(&mut self, command: &str, mem: &Memory) -> Value {
        let path = self.path(mem);
        match command {
            "create_shelf" | "mkdir" => json!({"path": path, "mode": *self.pick(MODES)}),
            "open_shelf" | "get_shelf" | "list_shelf_books" | "list_shelves" | "destroy_shelf"
            | "rmdir" | "readlink" | "list_xattrs" => json!({"path": path}),
            "close_shelf" => {
                let (id, handle) = if !mem.handles.is_empty() && self.chance(0.85) {
                    *self.pick(&mem.handles)
                } else {
                    (self.rng.gen_range(0..30), self.rng.gen_range(0..60))
                };
                json!({"id": id, "open_handle": handle})
            }
            "resize_shelf" => {
                let id = self.id(mem, &path);
                let mut p = json!({"path": path, "id": id, "size_bytes": self.size(),
                                   "zero_enabled": self.chance(0.7)});
                if self.chance(0.3) {
                    p["grow_only"] = json!(self.chance(0.5));
                }
                if self.chance(0.3) {
                    p["with_books"] = json!(self.chance(0.5));
                }
                p
            }
            "rename_shelf" => json!({"path": path, "newpath": self.path(mem)}),
            "symlink" => json!({"path": path, "target": self.path(mem)}),
            "set_am_time" => {
                json!({"path": path, "mtime": *self.pick(&[0, 1, 1_700_000_000, -5, i64::MAX])})
            }
            "chmod" => json!({"path": path, "mode": *self.pick(MODES)}),
            "get_xattr" | "remove_xattr" => json!({"path": path, "xattr": *self.pick(XATTRS)}),
            "set_xattr" => {
                let name = *self.pick(XATTRS);
                json!({"path": path, "xattr": name, "value": self.xattr_value(name)})
            }
            "get_shelf_path" => {
                json!({"name": *self.pick(NAMES), "parent_id": self.rng.gen_range(0..20)})
            }
            "get_book" => json!({"id": self.rng.gen_range(-1..i64::MAX)}),
            "get_book_ig" => json!({"intlv_group": [self.rng.gen_range(0..5)]}),
            "get_book_info_all" => json!({"intlv_group": self.rng.gen_range(0..5)}),
            "kill_zombie_books" => json!({"max_books": self.rng.gen_range(-1..100)}),
            "update_node_soc_status" => {
                json!({"status": self.rng.gen_range(0..3), "cpu_percent": 5})
            }
            "update_node_mc_status" => json!({"status": self.rng.gen_range(0..2)}),
            "send_OOB" => json!({"msg": "hello"}),
            _ => json!({}),
        }
    }

    /// An odd value of any JSON type.
    fn odd_value(&mut self) -> Value {
        match self.rng.gen_range(0..16) {
            0 => Value::Null,
            1 => json!(true),
            2 => json!(-1),
            3 => json!(i64::MAX),
            4 => json!(i64::MIN),
            5 => json!(1e300),
            6 => json!(0.5),
            7 => json!(9_007_199_254_740_993_u64),
            8 => json!(u64::MAX),
            9 => json!(""),
            10 => json!("12"),
            11 => json!("not a number"),
            12 => json!([1, "x", null]),
            13 => json!({"path": "/a"}),
            14 => json!(self.path(&Memory::default())),
            _ => json!(0o40755),
        }
    }

    /// A whole request object: valid, or with keys dropped, values swapped for odd ones, junk keys
    /// added, or a damaged context.
    fn request(&mut self, node_id: i64, seq: i64, mem: &Memory) -> Value {
        let command = *self.pick(COMMANDS);
        let mut params = self.params(command, mem);
        let mut context = json!({"node_id": node_id, "pid": 1000 + node_id, "seq": seq});
        if self.chance(0.25) {
            let obj = params.as_object_mut().expect("params are an object");
            let keys: Vec<String> = obj.keys().cloned().collect();
            for _ in 0..self.rng.gen_range(1..3) {
                match self.rng.gen_range(0..4) {
                    0 if !keys.is_empty() => {
                        obj.remove(self.pick(&keys));
                    }
                    1 if !keys.is_empty() => {
                        let k = self.pick(&keys).clone();
                        obj.insert(k, self.odd_value());
                    }
                    2 => {
                        obj.insert("junk".into(), self.odd_value());
                    }
                    _ => match self.rng.gen_range(0..5) {
                        0 => context["node_id"] = self.odd_value(),
                        1 => context["pid"] = self.odd_value(),
                        2 => context["physloc"] = self.odd_value(),
                        3 => context["node_id"] = json!(self.rng.gen_range(1..5)),
                        _ => context["node_id"] = json!(self.rng.gen_range(-3..200)),
                    },
                }
            }
        }
        let mut req = Map::new();
        req.insert("command".into(), json!(command));
        req.insert("context".into(), context);
        if let Value::Object(p) = params {
            req.extend(p);
        }
        Value::Object(req)
    }
}

// ---- one client ----

/// What one step sends: request objects, plus bytes that are no request (each gets one error
/// reply), or a torn frame after which the client reconnects.
enum Send {
    Requests(Vec<Value>),
    GarbageThen(Vec<u8>, Value),
    Torn(Value),
}

struct Driver<'a> {
    srv: &'a Server,
    node_id: i64,
    client: Client,
    seq: i64,
    mem: Memory,
    gen: Gen,
    /// The latest requests, for the failure report.
    log: VecDeque<String>,
    sent: usize,
}

impl<'a> Driver<'a> {
    fn new(srv: &'a Server, node_id: i64, seed: u64) -> Driver<'a> {
        Driver {
            srv,
            node_id,
            client: connect(srv, node_id),
            seq: 0,
            mem: Memory::default(),
            gen: Gen::new(seed),
            log: VecDeque::new(),
            sent: 0,
        }
    }

    fn note(&mut self, what: String) {
        if self.log.len() == SHOWN {
            self.log.pop_front();
        }
        self.log.push_back(what);
    }

    fn next_send(&mut self) -> Send {
        self.seq += 1;
        let req = self.gen.request(self.node_id, self.seq, &self.mem);
        match self.gen.rng.gen_range(0..100) {
            0 | 1 => {
                let junk = self
                    .gen
                    .pick(&[
                        &b"[1,2]"[..],
                        b"42",
                        b"\xff\xfe\x00",
                        b"]}",
                        b"{\"command\": nope}",
                    ])
                    .to_vec();
                Send::GarbageThen(junk, req)
            }
            2 => Send::Torn(req),
            3..=8 => {
                let mut reqs = vec![req];
                for _ in 0..self.gen.rng.gen_range(1..4) {
                    self.seq += 1;
                    reqs.push(self.gen.request(self.node_id, self.seq, &self.mem));
                }
                Send::Requests(reqs)
            }
            _ => Send::Requests(vec![req]),
        }
    }

    /// Sends one step and reads every reply it is owed. Panics (with the log) when the server does
    /// not answer: a stall or a crash is a failure as much as an inconsistent database.
    fn step(&mut self) {
        let send = self.next_send();
        let (bytes, replies, torn) = match &send {
            Send::Requests(reqs) => {
                let mut b = Vec::new();
                for r in reqs {
                    b.extend(serde_json::to_vec(r).expect("a request serialises"));
                }
                (b, reqs.len(), false)
            }
            Send::GarbageThen(junk, req) => {
                let mut b = junk.clone();
                b.extend(serde_json::to_vec(req).expect("a request serialises"));
                // `{"command": nope}` is one (malformed) object, not garbage: one reply either way.
                (b, 2, false)
            }
            Send::Torn(req) => {
                let b = serde_json::to_vec(req).expect("a request serialises");
                (b[..b.len() / 2].to_vec(), 0, true)
            }
        };
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        self.note(format!("node {}: {shown}", self.node_id));
        self.sent += 1;
        if let Err(e) = self.client.send_raw(&bytes) {
            self.fail(&format!("cannot send: {e}"));
        }
        if torn {
            self.client = connect(self.srv, self.node_id);
            return;
        }
        let reqs: Vec<&Value> = match &send {
            Send::Requests(r) => r.iter().collect(),
            Send::GarbageThen(_, r) => vec![r],
            Send::Torn(_) => vec![],
        };
        for i in 0..replies {
            let reply = match self.client.read_reply() {
                Ok(r) => r,
                Err(e) => self.fail(&format!("no reply ({e})")),
            };
            let req = match &send {
                Send::GarbageThen(..) if i == 0 => continue,
                Send::GarbageThen(..) => reqs[0],
                _ => reqs[i],
            };
            self.learn(req, &reply);
        }
    }

    fn learn(&mut self, req: &Value, reply: &Value) {
        let Some(value) = reply.get("value").filter(|_| reply.get("errmsg").is_none()) else {
            return;
        };
        let path = req.get("path").and_then(Value::as_str).unwrap_or_default();
        if let Some(id) = value.get("id").and_then(Value::as_i64) {
            self.mem.ids.insert(path.to_string(), id);
            if let Some(h) = value.get("open_handle").and_then(Value::as_i64) {
                self.mem.handles.push((id, h));
                if self.mem.handles.len() > 50 {
                    self.mem.handles.remove(0);
                }
            }
        }
        if let Some(z) = value.get("z_shelf_path").and_then(Value::as_str) {
            self.mem.zeroing.push(z.to_string());
            if self.mem.zeroing.len() > 20 {
                self.mem.zeroing.remove(0);
            }
        }
        if req["command"] == "close_shelf" {
            let h = req.get("open_handle").and_then(Value::as_i64);
            self.mem.handles.retain(|&(_, x)| Some(x) != h);
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "node {}: {what}\nlatest requests of this client:\n{}\nlibrarian log (tail):\n{}",
            self.node_id,
            self.log.iter().cloned().collect::<Vec<_>>().join("\n"),
            tail(&self.srv.log(), 40)
        );
    }
}

fn connect(srv: &Server, node_id: i64) -> Client {
    let c = Client::connect(("127.0.0.1", srv.port), node_id).expect("connect to the Librarian");
    c.set_timeout(Some(Duration::from_secs(20)))
        .expect("socket timeout");
    c
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---- the check ----

/// What fsck may find in a database whose server was stopped while nodes were still alive.
fn is_soft(p: Problem) -> bool {
    matches!(
        p,
        Problem::StaleOpen | Problem::PartialUnlink | Problem::ZombieBooks
    )
}

/// Stops the server cleanly, runs the real `fsck-lfs` and its library, and returns the findings
/// that are not soft state (as fsck's own lines), empty when the database is consistent.
fn hard_findings(srv: &mut Server) -> Vec<String> {
    srv.stop();
    let (code, text) = srv.fsck();
    assert!(
        code == fsck::exit::CLEAN || code == fsck::exit::REPAIRED || code == fsck::exit::UNREPAIRED,
        "fsck-lfs failed to check the database (exit {code}):\n{text}"
    );
    let report = fsck::check_file(&srv.db, false).expect("fsck of the database");
    let hard: Vec<String> = report
        .findings()
        .filter(|f| !is_soft(f.problem))
        .map(|f| format!("{:?}: {}", f.problem, f.message))
        .collect();
    if !hard.is_empty() {
        eprintln!("fsck-lfs (exit {code}):\n{text}");
    }
    hard
}

fn reproduce(seed: u64, test: &str) -> String {
    format!("reproduce: LFS_PROPTEST_SEED={seed} cargo test -p librarian --test consistency {test}")
}

const TOPOLOGY: &str = "[global]\nnode_count = 4\nbook_size_bytes = 8M\nnvm_size_per_node = 32B\n";

/// Runs rounds of requests for the test's time budget, with an fsck check after each: `round`
/// sends one window of requests (given the seed and the round's number) and returns how many it
/// sent and the latest requests to show if the check fails.
fn run_rounds(test: &str, mut round: impl FnMut(&Server, u64, u64) -> (usize, Vec<String>)) {
    let seed = seed();
    println!("seed {seed} ({})", reproduce(seed, test));
    let limit = budget(15);
    let mut srv = Server::start(TOPOLOGY);
    let started = Instant::now();
    let (mut total, mut checks) = (0, 0u64);
    while started.elapsed() < limit {
        let (sent, logs) = round(&srv, seed, checks);
        total += sent;
        checks += 1;
        let hard = hard_findings(&mut srv);
        assert!(
            hard.is_empty(),
            "after {total} requests (check {checks}), fsck-lfs found what no request may leave:\n{}\n\
             {}\nlatest requests (per client):\n{}",
            hard.join("\n"),
            reproduce(seed, test),
            logs.join("\n")
        );
        srv.launch();
    }
    println!("{test}: {total} requests, {checks} fsck checks, nothing but soft state");
}

#[test]
fn one_driver_many_clients() {
    run_rounds("one_driver_many_clients", |srv, seed, round| {
        let mut rng = StdRng::seed_from_u64(seed ^ round);
        let mut drivers: Vec<Driver> = (1..=4)
            .map(|n| Driver::new(srv, n, seed ^ (n as u64) << 32 ^ round))
            .collect();
        for _ in 0..WINDOW {
            let i = rng.gen_range(0..drivers.len());
            drivers[i].step();
        }
        let logs = drivers.iter().flat_map(|d| d.log.iter().cloned()).collect();
        (WINDOW, logs)
    });
}

#[test]
fn concurrent_clients() {
    run_rounds("concurrent_clients", |srv, seed, round| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..=4)
                .map(|n| {
                    s.spawn(move || {
                        let mut d = Driver::new(srv, n, seed.wrapping_add(n as u64) ^ round << 40);
                        for _ in 0..WINDOW / 4 {
                            d.step();
                        }
                        (d.sent, d.log.into_iter().collect::<Vec<_>>())
                    })
                })
                .collect();
            let mut sent = 0;
            let mut logs = vec![];
            for h in handles {
                let (n, log) = h
                    .join()
                    .expect("a client thread failed (see its panic above)");
                sent += n;
                logs.extend(log);
            }
            (sent, logs)
        })
    });
}
