//! The engine: one thread that owns the SQLite connection and the in-memory state, and runs
//! commands in batches with group commit.
//!
//! Connections parse requests on the tokio runtime and send them here. The engine takes every job
//! waiting (up to a limit), runs each inside its own SAVEPOINT, commits the batch once and only then
//! releases the replies: every reply follows a durable change, and 16 clients share one fsync
//! instead of paying one each. The engine (connection, memory, WAL handle) sits behind a mutex that
//! a batch holds until its sync is done; a connection with nothing else in flight runs its request
//! itself when the mutex is free (a change only if nothing is queued for the engine thread),
//! sparing two thread hand-offs, and sees exactly what the engine thread would. Small batches' replies are written to the sockets by the engine thread. A command that fails changes nothing: commands check before they
//! write, and should one fail after writing, its savepoint is rolled back and memory reloaded.
//!
//! Durability: SQLite commits with `synchronous=NORMAL` (no sync inside COMMIT) and the engine then
//! syncs the WAL file itself (`fdatasync`) before replying, for every batch that changed something
//! durable. Soft state, whose loss after a power cut is harmless and cleaned up anyway (closing an
//! open handle, node status and heartbeats), does not wait for a sync; so a node's close does not
//! hold up its next lookup. The next durable batch's sync covers those writes too.

pub mod pool;
pub mod state;

use crate::cmd;
use crate::connection::ReplyTo;
use lfs_proto::command::{Command, Effect};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rusqlite::Connection;
use serde_json::{Map, Value};
use state::State;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A command failure: the errno the client raises and a message for people.
#[derive(Debug, Clone, PartialEq)]
pub struct CmdError {
    pub errno: i32,
    pub msg: String,
}

impl CmdError {
    pub fn new(errno: i32, msg: impl Into<String>) -> Self {
        CmdError {
            errno,
            msg: msg.into(),
        }
    }
}

impl From<rusqlite::Error> for CmdError {
    fn from(e: rusqlite::Error) -> Self {
        CmdError::new(libc::EIO, format!("database error: {e}"))
    }
}

pub type CmdResult = Result<Value, CmdError>;

/// A parsed request: the envelope fields the engine uses and the command's parameters.
#[derive(Debug)]
pub struct Request {
    pub command: Command,
    pub node_id: i64,
    pub pid: i64,
    pub physloc: Option<String>,
    pub params: Map<String, Value>,
}

/// What a successful command produces: its value and, for `send_OOB`, a message for everyone else.
#[derive(Debug)]
pub struct Outcome {
    pub value: Value,
    pub oob: Option<Value>,
}

pub type Reply = Result<Outcome, CmdError>;

// A job is moved once, through the channel: boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Job {
    /// A request, and where its reply goes.
    Run(Request, ReplyTo),
    /// Stop after the jobs already queued.
    Shutdown,
}

/// Tunables from the command line.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Release a node's opens when it has been silent this long (`None`: never).
    pub open_timeout: Option<Duration>,
    /// How many requests may share one commit.
    pub max_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            open_timeout: Some(Duration::from_secs(60)),
            max_batch: 256,
        }
    }
}

pub struct Engine {
    pub conn: Connection,
    pub st: State,
    pub rng: StdRng,
    pub cfg: EngineConfig,
    /// The WAL file, synced after every durable batch.
    wal: std::fs::File,
    /// Whether the batch being run changed durable state (see the module doc).
    durable: bool,
    /// Set when the server has begun to stop: nothing more runs inline (see `try_inline`), so
    /// requests that arrive from then on are answered "the server is stopping", unrun.
    stopped: bool,
}

/// Batches of at most this many replies are written to the sockets by the engine thread itself.
const DIRECT_REPLIES: usize = 4;

/// Locks the engine; a panic while it was held was already turned into an error reply.
fn lock(engine: &Mutex<Engine>) -> std::sync::MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(|p| p.into_inner())
}

pub use lfs_db::now_secs;

/// Seconds since the epoch with a fraction, as in zeroing-shelf names (`time.time()` in Python).
pub fn now_float() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Engine {
    /// Opens an existing database (the server never creates one) in WAL mode with full sync.
    pub fn open(path: &std::path::Path, cfg: EngineConfig) -> anyhow::Result<Engine> {
        if !path.exists() {
            anyhow::bail!(
                "DB file \"{}\" does not exist: create it with `book-register -d {} CONFIG.ini`",
                path.display(),
                path.display()
            );
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            anyhow::bail!(
                "Cannot open WAL journal in {}: is the directory writable?",
                path.parent().unwrap_or(path).display()
            );
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        lfs_db::create_our_tables(&conn)?;
        let st = State::load(&conn)
            .map_err(|e| anyhow::anyhow!("cannot serve {}: {e}", path.display()))?;
        // SQLite keeps the WAL file (same inode) while this connection is open, so one handle to it
        // serves every sync.
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&wal_path)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open the WAL file {}: {e}",
                    wal_path.to_string_lossy()
                )
            })?;
        Ok(Engine {
            conn,
            st,
            rng: StdRng::from_entropy(),
            cfg,
            wal,
            durable: false,
            stopped: false,
        })
    }

    /// The engine loop: batches jobs, commits once per batch, then replies. The engine is shared
    /// with the connections, which may run a read-only request themselves while it is idle (see
    /// [`Engine::try_inline`]).
    pub fn run(engine: Arc<Mutex<Engine>>, jobs: Receiver<Job>, queued: Arc<AtomicUsize>) {
        let tick = Duration::from_secs(1);
        let mut last_tick = Instant::now();
        let max_batch = lock(&engine).cfg.max_batch;
        let mut batch: Vec<(Request, ReplyTo)> = Vec::new();
        let mut replies: Vec<(ReplyTo, Reply)> = Vec::new();
        let mut shutdown = false;
        while !shutdown {
            match jobs.recv_timeout(tick) {
                Ok(Job::Run(r, tx)) => batch.push((r, tx)),
                Ok(Job::Shutdown) | Err(RecvTimeoutError::Disconnected) => shutdown = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            while !shutdown && batch.len() < max_batch {
                match jobs.try_recv() {
                    Ok(Job::Run(r, tx)) => batch.push((r, tx)),
                    Ok(Job::Shutdown) => shutdown = true,
                    Err(_) => break,
                }
            }
            if shutdown {
                // The queued requests still run (this last batch), new ones no longer.
                lock(&engine).stopped = true;
            }
            let periodic = last_tick.elapsed() >= tick;
            if batch.is_empty() && !periodic {
                continue;
            }
            if periodic {
                last_tick = Instant::now();
            }
            let taken = batch.len();
            lock(&engine).run_batch(&mut batch, &mut replies, periodic);
            // Counted down only now: while the batch waits for the engine and runs, no change
            // runs inline ahead of it (it would overtake it and cost a sync of its own).
            queued.fetch_sub(taken, Ordering::SeqCst);
            // A few replies: this thread writes them to their sockets itself, sparing a wake-up
            // of a runtime thread per reply (what a lone client waits on). Many: the
            // connections' writer tasks send them, in parallel with the next batch.
            let direct = replies.len() <= DIRECT_REPLIES;
            for (tx, reply) in replies.drain(..) {
                tx.send(reply, direct);
            }
        }
        tracing::info!("engine stopped");
    }

    /// Runs a request on the calling thread if the engine is idle, sparing the hand-off to the
    /// engine thread and back; else gives it back. It then sees only what earlier batches
    /// committed and synced (a batch holds the engine until its sync is done), exactly as if the
    /// engine thread ran it, and a change is synced before the reply like any batch's. A change
    /// runs here only when no request is queued for the engine thread (`queued`), so that
    /// concurrent changes still share one sync there. The caller must have no earlier request of
    /// the same client pending.
    #[allow(clippy::result_large_err)] // the request comes back as it went in, unboxed
    pub fn try_inline(
        engine: &Mutex<Engine>,
        queued: &AtomicUsize,
        req: Request,
        to: ReplyTo,
    ) -> Result<(), (Request, ReplyTo)> {
        if req.command.effect() != Effect::ReadOnly && queued.load(Ordering::SeqCst) > 0 {
            return Err((req, to));
        }
        // A poisoned engine is used as the engine thread uses it (see `lock`), not taken as busy
        // for good, which would silently end inline runs.
        let mut e = match engine.try_lock() {
            Ok(e) => e,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err((req, to)),
        };
        if e.stopped {
            return Err((req, to));
        }
        let mut batch = vec![(req, to)];
        let mut replies = Vec::with_capacity(1);
        e.run_batch(&mut batch, &mut replies, false);
        drop(e);
        for (tx, reply) in replies {
            tx.send(reply, true);
        }
        Ok(())
    }

    /// Runs a batch in one transaction and commits it (syncing it if it changed durable state);
    /// the replies are left in `replies`, to be sent once the engine is released.
    fn run_batch(
        &mut self,
        batch: &mut Vec<(Request, ReplyTo)>,
        replies: &mut Vec<(ReplyTo, Reply)>,
        periodic: bool,
    ) {
        if let Err(e) = self.conn.execute_batch("BEGIN") {
            tracing::error!("cannot begin a transaction: {e}");
            for (_, tx) in batch.drain(..) {
                replies.push((
                    tx,
                    Err(CmdError::new(libc::EIO, format!("database error: {e}"))),
                ));
            }
            return;
        }
        for (req, tx) in batch.drain(..) {
            let reply = self.run_one(&req);
            replies.push((tx, reply));
        }
        if periodic {
            self.st.dirty = false;
            if let Err(e) = self.periodic() {
                tracing::error!("periodic maintenance failed: {}", e.msg);
            }
            self.durable |= self.st.dirty;
        }
        let durable = std::mem::take(&mut self.durable);
        let committed = self
            .conn
            .execute_batch("COMMIT")
            .map_err(|e| format!("database commit failed, nothing was changed: {e}"))
            .and_then(|()| {
                if durable {
                    self.wal.sync_data().map_err(|e| {
                        format!("the database could not be synced to disk ({e}): the change may be lost in a power cut")
                    })
                } else {
                    Ok(())
                }
            });
        if let Err(e) = committed {
            tracing::error!("batch failed: {e}");
            let _ = self.conn.execute_batch("ROLLBACK");
            self.reload();
            for (_, reply) in replies.iter_mut() {
                *reply = Err(CmdError::new(libc::EIO, e.clone()));
            }
        }
    }

    /// Runs one command inside a savepoint; on failure after a write, undoes it everywhere.
    fn run_one(&mut self, req: &Request) -> Reply {
        if let Err(e) = self.sql("SAVEPOINT cmd") {
            return Err(e.into());
        }
        self.st.dirty = false;
        // A bug in a handler must not take the whole server down: a panic becomes this request's
        // error, and its changes are undone like any failed command's.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.dispatch(req)))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                tracing::error!("{} panicked: {what}", req.command);
                self.st.dirty = true;
                Err(CmdError::new(
                    libc::EIO,
                    format!(
                        "internal error in {} (a Librarian bug: {what}); nothing was changed",
                        req.command
                    ),
                ))
            });
        let failed_after_write = result.is_err() && self.st.dirty;
        if result.is_ok() && self.st.dirty && req.command.effect() != Effect::Soft {
            self.durable = true;
        }
        if failed_after_write {
            let _ = self.conn.execute_batch("ROLLBACK TO cmd; RELEASE cmd");
            self.reload();
        } else if let Err(e) = self.sql("RELEASE cmd") {
            return Err(e.into());
        }
        if let Err(e) = &result {
            tracing::debug!("{} failed: errno {}: {}", req.command, e.errno, e.msg);
        }
        result
    }

    /// Runs a statement without parameters from the statement cache (savepoints run for every
    /// command: parsing them each time would be measurable).
    fn sql(&self, statement: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(statement)?.execute([]).map(|_| ())
    }

    /// Rebuilds memory from the database after a rollback.
    fn reload(&mut self) {
        match State::load(&self.conn) {
            Ok(mut fresh) => {
                fresh.carry_over(&self.st);
                self.st = fresh;
            }
            Err(e) => tracing::error!("cannot reload state after a rollback: {e}"),
        }
    }

    fn dispatch(&mut self, req: &Request) -> Reply {
        self.heartbeat(req.node_id)?;
        cmd::dispatch(self, req)
    }

    /// Node check and heartbeat: every request from a node proves it alive.
    fn heartbeat(&mut self, node_id: i64) -> Result<(), CmdError> {
        if !(1..=80).contains(&node_id) {
            return Err(CmdError::new(
                libc::EINVAL,
                format!("Bad node enumeration value {node_id}: node ids are 1 to 80"),
            ));
        }
        let now = now_secs();
        let Some(node) = self.st.nodes.get_mut(&node_id) else {
            return Err(CmdError::new(
                libc::EINVAL,
                format!("Node {node_id} is not configured in Librarian topology"),
            ));
        };
        node.last_seen = Instant::now();
        if node.heartbeat_written != now {
            node.heartbeat_written = now;
            self.conn
                .prepare_cached("UPDATE SOCs SET heartbeat=? WHERE node_id=?")?
                .execute(rusqlite::params![now, node_id])?;
        }
        Ok(())
    }

    /// Once a second: release the opens of nodes silent for longer than the open timeout.
    fn periodic(&mut self) -> Result<(), CmdError> {
        let Some(timeout) = self.cfg.open_timeout else {
            return Ok(());
        };
        let silent: Vec<i64> = self
            .st
            .nodes
            .values()
            .filter(|n| n.last_seen.elapsed() > timeout)
            .map(|n| n.node_id)
            .filter(|id| self.st.opens.values().any(|o| o.node_id == *id))
            .collect();
        for node_id in silent {
            tracing::warn!(
                "node {node_id} silent for over {}s: releasing its opens",
                timeout.as_secs()
            );
            self.conn.execute_batch("SAVEPOINT cmd")?;
            match cmd::nodes::release_node(self, node_id) {
                Ok(()) => self.conn.execute_batch("RELEASE cmd")?,
                Err(e) => {
                    tracing::error!("releasing node {node_id}: {}", e.msg);
                    self.conn.execute_batch("ROLLBACK TO cmd; RELEASE cmd")?;
                    self.reload();
                }
            }
        }
        Ok(())
    }
}
