//! The daemon's connections to the Librarian: a few blocking [`Client`]s, each behind a mutex, so
//! that requests from different FUSE threads (e.g. the close of one file and the create of the
//! next) are in flight together and share the Librarian's group commit. They reconnect by
//! themselves.
//!
//! While the Librarian is unreachable, calls keep retrying with backoff until the link has been down
//! for `timeout`; from then on they fail at once with EIO until a reconnect succeeds. A reconnect
//! sends nothing but the next request: in particular never `update_node_mc_status`, which would make
//! the Librarian drop every open record of this node (open files must survive a restart).
//!
//! A request whose reply was lost may or may not have been executed. It is sent again; the result
//! says so ([`LinkError::resent`]), so that callers of non-idempotent commands (mkdir, rename,
//! destroy...) can accept the "already done" error that a second execution gives.

use librarian::client::{Client, ClientError};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Who this node is, for every request's context.
#[derive(Clone, Debug)]
pub struct Identity {
    pub node_id: i64,
    /// `rack_enc_node`, as the Librarian wants it.
    pub physloc: String,
}

/// A failed call: the errno for the FUSE caller and the Librarian's (or our) message.
#[derive(Debug, Clone)]
pub struct LinkError {
    pub errno: i32,
    pub msg: String,
    /// The request was sent more than once (its first execution may have happened).
    pub resent: bool,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (errno {})", self.msg, self.errno)
    }
}

impl std::error::Error for LinkError {}

pub type LinkResult = Result<Value, LinkError>;

/// The Librarian's reply to requests it received while stopping (it did not run them).
const LIBRARIAN_STOPPING: &str = "the server is stopping";

/// Connections per daemon: one per FUSE thread that may be waiting on the Librarian.
const CONNECTIONS: usize = 4;

struct State {
    client: Option<Client>,
}

pub struct Link {
    host: String,
    port: u16,
    who: Identity,
    timeout: Duration,
    conns: Vec<Mutex<State>>,
    next: AtomicUsize,
    /// When the Librarian was first seen unreachable in the current outage.
    down_since: Mutex<Option<Instant>>,
}

impl Link {
    pub fn new(host: &str, port: u16, who: Identity, timeout: Duration) -> Link {
        Link {
            host: host.to_string(),
            port,
            who,
            timeout,
            conns: (0..CONNECTIONS)
                .map(|_| Mutex::new(State { client: None }))
                .collect(),
            next: AtomicUsize::new(0),
            down_since: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.who
    }

    /// One connection attempt.
    fn connect(&self) -> std::io::Result<Client> {
        let mut c = Client::connect((self.host.as_str(), self.port), self.who.node_id)?;
        c.set_context("physloc", serde_json::json!(self.who.physloc));
        // One pid for the whole daemon: the Librarian then never sees two openers on this node,
        // so a process here can shrink a file another process here has open.
        c.set_context("pid", serde_json::json!(std::process::id()));
        // A Librarian that stops answering counts as down after the same timeout.
        c.set_timeout(Some(self.timeout.max(Duration::from_secs(1))))?;
        Ok(c)
    }

    /// Connects, retrying every 2 s until it works or `give_up` says stop (daemon start-up: the
    /// original retried forever, the mount does not appear until the Librarian is reachable).
    pub fn connect_patiently(&self, give_up: impl Fn() -> bool) -> Result<(), String> {
        let mut logged = false;
        loop {
            match self.connect() {
                Ok(c) => {
                    self.conns[0].lock().unwrap().client = Some(c);
                    return Ok(());
                }
                Err(e) => {
                    if !logged {
                        tracing::warn!(
                            "cannot reach the Librarian at {}:{} ({e}); retrying every 2 s",
                            self.host,
                            self.port
                        );
                        logged = true;
                    }
                }
            }
            for _ in 0..20 {
                if give_up() {
                    return Err("stopped while waiting for the Librarian".into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// A free connection if there is one, else the next in turn (waiting for it).
    fn pick(&self) -> MutexGuard<'_, State> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.conns.len() {
            if let Ok(g) = self.conns[(first + i) % self.conns.len()].try_lock() {
                return g;
            }
        }
        let m = &self.conns[first % self.conns.len()];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a command; see the module doc for the retry rules.
    pub fn call(&self, command: &str, params: Value) -> LinkResult {
        self.call_within(command, params, self.timeout)
    }

    /// As [`call`](Self::call), giving up after `timeout` of outage (e.g. short at shutdown).
    pub fn call_within(&self, command: &str, params: Value, timeout: Duration) -> LinkResult {
        let start = Instant::now();
        let mut st = self.pick();
        let mut sent = 0u32;
        let mut backoff = Duration::from_millis(50);
        loop {
            if st.client.is_none() {
                match self.connect() {
                    Ok(c) => {
                        if let Some(since) = self.down_since.lock().unwrap().take() {
                            tracing::info!(
                                "reconnected to the Librarian after {:.1} s",
                                since.elapsed().as_secs_f64()
                            );
                        }
                        st.client = Some(c);
                    }
                    Err(e) => {
                        let since = *self.down_since.lock().unwrap().get_or_insert(start);
                        if since.elapsed() >= timeout {
                            return Err(LinkError {
                                errno: libc::EIO,
                                msg: format!(
                                    "the Librarian at {}:{} has been unreachable for {:.0} s ({e}); giving up on {command} (--librarian-timeout is {} s)",
                                    self.host,
                                    self.port,
                                    since.elapsed().as_secs_f64(),
                                    timeout.as_secs()
                                ),
                                resent: sent > 1,
                            });
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            let client = st.client.as_mut().expect("connected above");
            sent += 1;
            match client.call(command, params.clone()) {
                Ok(v) => return Ok(v),
                // A Librarian that is shutting down drops queued requests unexecuted with this
                // reply: the same as a lost connection, so wait for its successor.
                Err(ClientError::Remote { msg, .. }) if msg == LIBRARIAN_STOPPING => {
                    tracing::warn!(
                        "the Librarian is stopping; {command} waits for it to come back"
                    );
                    st.client = None;
                    self.down_since
                        .lock()
                        .unwrap()
                        .get_or_insert(Instant::now());
                    std::thread::sleep(backoff);
                }
                Err(ClientError::Remote { errno, msg }) => {
                    return Err(LinkError {
                        // errno 0 from the Librarian means "internal error": report EIO.
                        errno: if errno > 0 { errno } else { libc::EIO },
                        msg,
                        resent: sent > 1,
                    });
                }
                Err(e) => {
                    tracing::warn!("lost the Librarian connection during {command}: {e}");
                    st.client = None;
                    self.down_since
                        .lock()
                        .unwrap()
                        .get_or_insert(Instant::now());
                }
            }
        }
    }
}
