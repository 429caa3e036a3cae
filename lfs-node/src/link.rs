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
//!
//! Requests are typed ([`lfs_proto::request`]): a call takes one value that carries both the
//! command and its parameters and returns the command's reply type, so that the two cannot
//! disagree; a reply of the wrong shape is a [`LinkError::BadReply`].

use lfs_proto::client::{Client, ClientError};
use lfs_proto::errno::STOPPING as STOPPING_ERRNO;
use lfs_proto::request::{self, BadReply, Request};
use lfs_proto::Command;
use serde_json::Value;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Who this node is, for every request's context.
#[derive(Clone, Debug)]
pub struct Identity {
    pub node_id: i64,
    /// `rack_enc_node`, as the Librarian wants it.
    pub physloc: String,
}

/// A failed call, by what went wrong: the Librarian said no, it could not be asked, or its
/// answer cannot be used. Each gives the errno for the FUSE caller ([`errno`](Self::errno)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The Librarian ran the request and refused it with this errno and message.
    #[error("{msg} (errno {errno})")]
    Refused {
        errno: i32,
        msg: String,
        /// The request was sent more than once (its first execution may have happened).
        resent: bool,
    },
    /// No answer: the Librarian was unreachable for longer than the timeout, or stopping while
    /// this daemon was, or the daemon is stopping. The message says which.
    #[error("{msg}")]
    Unreachable { msg: String, resent: bool },
    /// The Librarian answered with a reply this daemon cannot use (a protocol mismatch).
    #[error(transparent)]
    BadReply(#[from] BadReply),
}

impl LinkError {
    /// The errno for the caller: the Librarian's, else EIO.
    pub fn errno(&self) -> i32 {
        match self {
            LinkError::Refused { errno, .. } => *errno,
            LinkError::Unreachable { .. } | LinkError::BadReply(_) => libc::EIO,
        }
    }

    /// Whether the Librarian answered with something this daemon cannot use.
    pub fn is_bad_reply(&self) -> bool {
        matches!(self, LinkError::BadReply(_))
    }

    /// Whether the request was sent more than once: then a refusal may be the answer to a repeat
    /// of a request whose first execution succeeded (EEXIST after a mkdir, ENOENT after a
    /// rename or destroy), which callers of such requests accept.
    pub fn resent(&self) -> bool {
        match self {
            LinkError::Refused { resent, .. } | LinkError::Unreachable { resent, .. } => *resent,
            LinkError::BadReply(_) => false,
        }
    }
}

/// Start-up gave up waiting for the Librarian.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stopped while waiting for the Librarian")]
pub struct Stopped;

/// How long a call made while stopping waits for a reply on a new connection.
const STOPPING_TIMEOUT: Duration = Duration::from_secs(1);

/// The least time a connection attempt is given (name resolution and TCP connect), also once an
/// outage has outlasted the timeout.
const MIN_CONNECT: Duration = Duration::from_secs(1);

/// `host`'s addresses, waiting at most `within` for the resolver (an abandoned lookup finishes
/// in its own thread).
fn resolve(host: &str, port: u16, within: Duration) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let r = (name.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>());
            let _ = tx.send(r);
        })?;
    rx.recv_timeout(within).unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no address for {host} within {:.1} s (name resolution)",
                within.as_secs_f64()
            ),
        ))
    })
}

/// Connections per daemon: one per FUSE thread that may be waiting on the Librarian.
const CONNECTIONS: usize = 4;

struct State {
    /// Which of the link's connections this is (its socket's place in `Link::sockets`).
    slot: usize,
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
    /// Set at shutdown: calls no longer wait for the Librarian (one attempt each, no retries).
    stopping: AtomicBool,
    /// Set by [`abort`](Self::abort): calls fail at once, without trying.
    aborted: AtomicBool,
    /// A second handle on each connection's socket, for [`abort`](Self::abort), by slot: a
    /// reconnect replaces (and so closes) the handle of the connection it replaces.
    sockets: Mutex<Vec<Option<TcpStream>>>,
}

impl Link {
    pub fn new(host: &str, port: u16, who: Identity, timeout: Duration) -> Link {
        Link {
            host: host.to_string(),
            port,
            who,
            timeout,
            conns: (0..CONNECTIONS)
                .map(|slot| Mutex::new(State { slot, client: None }))
                .collect(),
            next: AtomicUsize::new(0),
            down_since: Mutex::new(None),
            stopping: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            sockets: Mutex::new((0..CONNECTIONS).map(|_| None).collect()),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.who
    }

    /// One connection attempt, taking at most about `budget` (at least [`MIN_CONNECT`]): name
    /// resolution and TCP connect are both bounded, so that `--librarian-timeout` holds when the
    /// Librarian's host is unreachable (glibc's resolver alone retries for 10 s when the DNS
    /// server does not answer, e.g. a container cut off its network; a TCP connect to a host
    /// that drops packets takes two minutes).
    fn connect(&self, slot: usize, budget: Duration) -> std::io::Result<Client> {
        let start = Instant::now();
        let budget = budget.max(MIN_CONNECT);
        let mut last = None;
        let mut c = 'connected: {
            for addr in resolve(&self.host, self.port, budget)? {
                let left = budget
                    .saturating_sub(start.elapsed())
                    .max(Duration::from_millis(100));
                match Client::connect_timeout(&addr, self.who.node_id, left) {
                    Ok(c) => break 'connected c,
                    Err(e) => last = Some(e),
                }
            }
            return Err(last.unwrap_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} has no address", self.host),
                )
            }));
        };
        c.set_context("physloc", serde_json::json!(self.who.physloc));
        // One pid for the whole daemon: the Librarian then never sees two openers on this node,
        // so a process here can shrink a file another process here has open.
        c.set_context("pid", serde_json::json!(std::process::id()));
        // A Librarian that stops answering counts as down after the same timeout.
        c.set_timeout(Some(self.timeout.max(Duration::from_secs(1))))?;
        if let Ok(s) = c.try_clone_stream() {
            let mut sockets = self.sockets.lock().unwrap();
            if self.aborted.load(Ordering::SeqCst) {
                let _ = s.shutdown(Shutdown::Both);
            }
            sockets[slot] = Some(s);
        }
        Ok(c)
    }

    /// From now on calls fail with EIO instead of waiting for an unreachable Librarian (each still
    /// gets one attempt, e.g. the OFFLINE status at shutdown).
    pub fn stop_waiting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// [`stop_waiting`](Self::stop_waiting), and calls blocked waiting for a reply return at once
    /// with EIO (their connections are shut down), as do new calls, until
    /// [`resume_for_shutdown`](Self::resume_for_shutdown).
    pub fn abort(&self) {
        self.stop_waiting();
        self.aborted.store(true, Ordering::SeqCst);
        for s in self
            .sockets
            .lock()
            .unwrap()
            .iter_mut()
            .filter_map(Option::take)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// After [`abort`](Self::abort): lets the last calls (the OFFLINE status) have one attempt each,
    /// on new connections that wait at most `STOPPING_TIMEOUT` for a reply.
    pub fn resume_for_shutdown(&self) {
        self.aborted.store(false, Ordering::SeqCst);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Connects, retrying every 2 s until it works or `give_up` says stop (daemon start-up: the
    /// original retried forever, the mount does not appear until the Librarian is reachable).
    pub fn connect_patiently(&self, give_up: impl Fn() -> bool) -> Result<(), Stopped> {
        let mut logged = false;
        loop {
            match self.connect(0, self.timeout) {
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
                    return Err(Stopped);
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

    /// Sends a request and reads its reply; see the module doc for the retry rules.
    pub fn call<R: Request>(&self, req: &R) -> Result<R::Reply, LinkError> {
        self.call_within(req, self.timeout)
    }

    /// As [`call`](Self::call), giving up after `timeout` of outage (e.g. short at shutdown).
    pub fn call_within<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Reply, LinkError> {
        self.call_noting_resend(req, timeout).map(|(v, _)| v)
    }

    /// As [`call_within`](Self::call_within), also saying whether the request had to be sent more
    /// than once: then its first execution may have happened with the reply lost (e.g. the
    /// Librarian was killed after committing it), which matters for requests that open a file.
    pub fn call_noting_resend<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<(R::Reply, bool), LinkError> {
        let (v, resent) = self.send(R::COMMAND, req.params(), timeout)?;
        Ok((request::read_reply::<R>(&v)?, resent))
    }

    /// How long calls wait for an unreachable Librarian (`--librarian-timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `command` with `params` until it gets an answer or gives up, returning the reply's
    /// value and whether it was sent more than once. Private: callers go through the typed
    /// [`call`](Self::call), so a command is never sent with another's parameters.
    fn send(
        &self,
        command: Command,
        params: Value,
        timeout: Duration,
    ) -> Result<(Value, bool), LinkError> {
        if self.aborted.load(Ordering::SeqCst) {
            return Err(LinkError::Unreachable {
                msg: format!("{command} not sent: the daemon is stopping"),
                resent: false,
            });
        }
        let start = Instant::now();
        let mut st = self.pick();
        let mut sent = 0u32;
        let mut backoff = Duration::from_millis(50);
        // Connected during this call: while stopping, a failure on it ends the call.
        let mut fresh = false;
        loop {
            if st.client.is_none() {
                // What is left of the timeout in this outage (then MIN_CONNECT).
                let since = self.down_since.lock().unwrap().unwrap_or(start);
                match self.connect(st.slot, timeout.saturating_sub(since.elapsed())) {
                    Ok(c) => {
                        fresh = true;
                        if self.stopping() {
                            let _ = c.set_timeout(Some(STOPPING_TIMEOUT));
                        }
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
                        if since.elapsed() >= timeout || self.stopping() {
                            return Err(LinkError::Unreachable {
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
                Ok(v) => return Ok((v, sent > 1)),
                // A Librarian that is shutting down drops queued requests unexecuted with this
                // reply: the same as a lost connection, so wait for its successor.
                Err(ClientError::Remote { errno, .. })
                    if errno == STOPPING_ERRNO && self.stopping() =>
                {
                    return Err(LinkError::Unreachable {
                        msg: format!("the Librarian is stopping; {command} not done (this daemon is stopping too)"),
                        resent: sent > 1,
                    });
                }
                Err(ClientError::Remote { errno, .. }) if errno == STOPPING_ERRNO => {
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
                    return Err(LinkError::Refused {
                        // errno 0 from the Librarian means "internal error": report EIO.
                        errno: if errno > 0 { errno } else { libc::EIO },
                        msg,
                        resent: sent > 1,
                    });
                }
                Err(e) if self.aborted.load(Ordering::SeqCst) || (self.stopping() && fresh) => {
                    return Err(LinkError::Unreachable {
                        msg: format!(
                            "lost the Librarian connection during {command} at shutdown: {e}"
                        ),
                        resent: true,
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
