//! One client connection: frames in, requests to the engine, replies out in request order.
//!
//! Requests are read and handed to the engine as they arrive, so a client that pipelines gets all of
//! them processed (the original processed one request per readable event and stalled the rest).
//! Each request takes a slot in the connection's [`Outbox`]; replies leave strictly in slot order.
//! The engine thread writes a reply to the socket itself when it can (a non-blocking send of a
//! small reply on an idle socket), which saves waking a runtime thread for every request; what the
//! socket does not take at once, and the replies of large batches, go through the connection's
//! writer task. At most [`MAX_IN_FLIGHT`] requests per connection wait for replies, so a client
//! that never reads cannot make the server buffer without bound.

use crate::engine::{CmdError, Engine, Job, Reply, Request};
use lfs_proto::frame::{self, Frame, FrameScanner};
use lfs_proto::Command;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

pub const MAX_IN_FLIGHT: usize = 1024;

/// Reply bytes the socket has not taken yet beyond which the connection stops reading requests.
const MAX_BACKLOG_BYTES: usize = 4 << 20;

/// A slot's content once known.
enum Slot {
    /// Bytes to send, and an OOB message to broadcast to the other connections once they are sent.
    Bytes(Vec<u8>, Option<Value>),
    /// Send what came before, then close.
    Close,
}

#[derive(Default)]
struct Inner {
    /// Sequence number of `slots[0]`.
    head: u64,
    /// Replies in request order; `None` while the engine computes it.
    slots: VecDeque<Option<Slot>>,
    /// Bytes due before anything else, which the writer task is sending. While it is non-empty or
    /// `busy`, nobody else writes to the socket.
    backlog: Vec<u8>,
    /// The writer task owns the socket (it is sending `backlog`, or closing).
    busy: bool,
    /// A `Close` was reached: the writer task closes after `backlog`; later bytes are dropped.
    closing: bool,
    /// Writing failed: the client is gone, replies are dropped.
    dead: bool,
    /// The reader stopped: the writer task ends once every slot is sent.
    reader_done: bool,
}

impl Inner {
    /// Whether another reply may wait here (below both the in-flight and the backlog limits).
    fn has_room(&self) -> bool {
        self.slots.len() < MAX_IN_FLIGHT && self.backlog.len() < MAX_BACKLOG_BYTES
    }

    /// Appends an empty slot and returns its sequence number.
    fn take_slot(&mut self) -> u64 {
        self.slots.push_back(None);
        self.head + self.slots.len() as u64 - 1
    }
}

/// A connection's outgoing side, shared by its reader task, the engine thread and its writer task.
pub struct Outbox {
    /// The socket (a duplicate of the runtime's descriptor, non-blocking like it), for direct
    /// writes from the engine thread.
    sock: std::net::TcpStream,
    inner: Mutex<Inner>,
    /// Wakes the writer task (backlog to send, close, or the end).
    wake: Notify,
    /// Wakes the reader when there is room for more requests in flight.
    room: Notify,
    registry: Arc<Registry>,
    id: u64,
}

/// Where the engine sends a request's reply: its connection's slot, with what the reply needs
/// (the context to echo, and the command and arrival time for the statistics). Dropped without a
/// reply (the server stopping), it answers "the server is stopping".
pub struct ReplyTo {
    outbox: Arc<Outbox>,
    seq: u64,
    context: Value,
    command: &'static str,
    arrived: Instant,
    sent: bool,
}

impl ReplyTo {
    /// Sends the reply; with `direct`, the calling thread writes it to the socket if the socket
    /// takes it at once, else the connection's writer task sends it.
    pub fn send(mut self, reply: Reply, direct: bool) {
        self.sent = true;
        self.finish(reply, direct);
    }

    fn finish(&mut self, reply: Reply, direct: bool) {
        let registry = &self.outbox.registry;
        registry
            .stats
            .record(self.command, self.arrived.elapsed(), reply.is_ok());
        let slot = match reply {
            Ok(o) => Slot::Bytes(frame::success(&o.value, &self.context), o.oob),
            Err(e) => Slot::Bytes(frame::error(&e.msg, e.errno), None),
        };
        self.outbox.fill(self.seq, slot, direct);
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if !self.sent {
            self.finish(
                Err(CmdError::new(
                    lfs_proto::errno::STOPPING,
                    "the server is stopping",
                )),
                false,
            );
        }
    }
}

impl Outbox {
    /// Takes a slot for the next reply, waiting while too many are in flight; `None` once the
    /// client is gone.
    async fn reserve(&self) -> Option<u64> {
        loop {
            {
                let mut g = self.inner.lock().expect("outbox lock");
                if g.dead {
                    return None;
                }
                if g.has_room() {
                    return Some(g.take_slot());
                }
            }
            self.room.notified().await;
        }
    }

    /// Takes a slot and fills it at once (errors found while parsing, OOB broadcasts).
    fn push(&self, slot: Slot, direct: bool) {
        let seq = self.inner.lock().expect("outbox lock").take_slot();
        self.fill(seq, slot, direct);
    }

    /// Fills slot `seq` and sends every reply that is now due, in order.
    fn fill(&self, seq: u64, slot: Slot, direct: bool) {
        let mut oobs = vec![];
        let mut g = self.inner.lock().expect("outbox lock");
        let Some(cell) = seq
            .checked_sub(g.head)
            .and_then(|i| g.slots.get_mut(i as usize))
        else {
            return;
        };
        *cell = Some(slot);
        let mut out = Vec::new();
        let mut popped = false;
        while let Some(Some(_)) = g.slots.front() {
            let Some(Some(slot)) = g.slots.pop_front() else {
                unreachable!("front checked above")
            };
            g.head += 1;
            popped = true;
            if g.closing || g.dead {
                continue;
            }
            match slot {
                Slot::Bytes(bytes, oob) => {
                    out.extend_from_slice(&bytes);
                    oobs.extend(oob);
                }
                Slot::Close => g.closing = true,
            }
        }
        if !out.is_empty() {
            if direct && !g.busy {
                match (&self.sock).write(&out) {
                    Ok(n) if n == out.len() => out.clear(),
                    Ok(n) => {
                        out.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        g.dead = true;
                        out.clear();
                    }
                }
            }
            if !out.is_empty() {
                g.backlog.extend_from_slice(&out);
                g.busy = true;
            }
        }
        let wake_writer = g.busy || g.closing || g.dead || (g.reader_done && g.slots.is_empty());
        drop(g);
        if wake_writer {
            self.wake.notify_one();
        }
        if popped {
            self.room.notify_one();
        }
        for msg in oobs {
            self.registry.broadcast(self.id, &frame::oob(&msg));
        }
    }

    /// Replies not sent yet (including ones being computed).
    fn in_flight(&self) -> usize {
        self.inner.lock().expect("outbox lock").slots.len()
    }

    fn is_dead(&self) -> bool {
        self.inner.lock().expect("outbox lock").dead
    }
}

/// What all connections share: every connection's outbox (for `send_OOB` broadcasts) and the
/// request statistics.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    peers: Mutex<HashMap<u64, Arc<Outbox>>>,
    pub stats: crate::stats::Stats,
}

impl Registry {
    fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn add(&self, outbox: Arc<Outbox>) {
        self.peers
            .lock()
            .expect("registry lock")
            .insert(outbox.id, outbox);
    }

    fn remove(&self, id: u64) {
        self.peers.lock().expect("registry lock").remove(&id);
    }

    /// Sends an OOB message to every connection but `from` (dropped where too many replies wait).
    fn broadcast(&self, from: u64, bytes: &[u8]) {
        let peers: Vec<Arc<Outbox>> = self
            .peers
            .lock()
            .expect("registry lock")
            .iter()
            .filter(|(id, _)| **id != from)
            .map(|(_, o)| o.clone())
            .collect();
        for o in peers {
            let room = o.inner.lock().expect("outbox lock").has_room();
            if room {
                o.push(Slot::Bytes(bytes.to_vec(), None), false);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.peers.lock().expect("registry lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn einval(msg: impl Into<String>) -> Vec<u8> {
    frame::error(&msg.into(), libc::EINVAL)
}

/// Turns one framed object into a request, or the error reply it deserves.
pub fn parse_request(bytes: &[u8]) -> Result<Option<(Request, Value)>, Vec<u8>> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        einval(format!(
            "malformed request: {e} (requests are JSON objects in UTF-8; names must be valid Unicode)"
        ))
    })?;
    let Value::Object(mut obj) = value else {
        return Err(einval("a request must be a JSON object"));
    };
    if obj.get("OOBmsg").is_some_and(truthy) {
        // Out-of-band messages are server-to-client only; one sent to us is ignored (the original
        // queued it and never read that connection again).
        return Ok(None);
    }
    let lookup_failed = |key: &str| {
        frame::error(
            &format!("engine failed lookup on \"'{key}'\""),
            libc::ENOSYS,
        )
    };
    let command = match obj.remove("command") {
        Some(Value::String(c)) => Command::from_name(&c).ok_or_else(|| lookup_failed(&c))?,
        _ => return Err(lookup_failed("command")),
    };
    let context = match obj.remove("context") {
        Some(c @ Value::Object(_)) => c,
        _ => return Err(lookup_failed("context")),
    };
    let node_id = match context.get("node_id").map(|v| (v, crate::cmd::as_int(v))) {
        Some((_, Some(n))) => n,
        Some((v, None)) => {
            return Err(einval(format!(
                "context.node_id must be an integer 1..80, got {v}"
            )))
        }
        None => return Err(einval("context.node_id is missing (the node's id, 1..80)")),
    };
    let pid = context.get("pid").and_then(crate::cmd::as_int).unwrap_or(0);
    let physloc = context
        .get("physloc")
        .and_then(Value::as_str)
        .map(str::to_string);
    let params: Map<String, Value> = obj;
    Ok(Some((
        Request {
            command,
            node_id,
            pid,
            physloc,
            params,
        },
        context,
    )))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Serves one client until it closes, sends something unrecoverable, or the server stops.
pub async fn serve(
    socket: TcpStream,
    jobs: std::sync::mpsc::Sender<Job>,
    engine: Arc<Mutex<Engine>>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    registry: Arc<Registry>,
) {
    let _ = socket.set_nodelay(true);
    let dup = {
        use std::os::fd::AsFd;
        socket
            .as_fd()
            .try_clone_to_owned()
            .map(std::net::TcpStream::from)
    };
    let Ok(sock) = dup else {
        tracing::warn!("cannot duplicate a client socket: closing it");
        return;
    };
    let (mut rd, wr) = socket.into_split();
    let id = registry.next_id();
    let outbox = Arc::new(Outbox {
        sock,
        inner: Mutex::new(Inner::default()),
        wake: Notify::new(),
        room: Notify::new(),
        registry: registry.clone(),
        id,
    });
    registry.add(outbox.clone());
    let writer = tokio::spawn(write_replies(wr, outbox.clone()));
    let mut scanner = FrameScanner::new();
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        scanner.extend(&buf[..n]);
        while let Some(f) = scanner.next_frame() {
            if outbox.is_dead() {
                break 'read;
            }
            match f {
                Frame::Object(bytes) => match parse_request(&bytes) {
                    Ok(Some((req, context))) => {
                        let command = req.command.name();
                        let arrived = Instant::now();
                        let Some(seq) = outbox.reserve().await else {
                            break 'read;
                        };
                        let to = ReplyTo {
                            outbox: outbox.clone(),
                            seq,
                            context,
                            command,
                            arrived,
                            sent: false,
                        };
                        // Alone in flight on this connection (so nothing it sent earlier is still
                        // waiting in the engine's queue): it may run here and now.
                        let (req, to) = if outbox.in_flight() == 1 {
                            match Engine::try_inline(&engine, &queued, req, to) {
                                Ok(()) => continue,
                                Err(back) => back,
                            }
                        } else {
                            (req, to)
                        };
                        queued.fetch_add(1, Ordering::SeqCst);
                        if jobs.send(Job::Run(req, to)).is_err() {
                            break 'read; // the server is stopping (the request is answered so)
                        }
                    }
                    Ok(None) => {}
                    Err(bytes) => outbox.push(Slot::Bytes(bytes, None), true),
                },
                Frame::Garbage(n) => outbox.push(
                    Slot::Bytes(
                        einval(format!(
                            "ignored {n} byte(s) that are not a JSON object: each request must be one JSON object"
                        )),
                        None,
                    ),
                    true,
                ),
                Frame::TooLarge => {
                    let msg = frame::error(
                        &format!(
                            "request larger than {} MiB: closing the connection",
                            frame::MAX_FRAME_BYTES >> 20
                        ),
                        libc::EMSGSIZE,
                    );
                    outbox.push(Slot::Bytes(msg, None), false);
                    outbox.push(Slot::Close, false);
                    drain(&mut rd).await;
                    break 'read;
                }
            }
        }
    }
    {
        let mut g = outbox.inner.lock().expect("outbox lock");
        g.reader_done = true;
    }
    outbox.wake.notify_one();
    let _ = writer.await;
    registry.remove(id);
}

/// Reads and discards what the client is still sending, for a short while, so that closing does not
/// reset the connection before the client has read our error reply.
async fn drain(rd: &mut tokio::net::tcp::OwnedReadHalf) {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// Sends what the socket did not take at once, closes after a `Close`, and ends once the reader
/// has stopped and every reply is sent (or the client is gone).
async fn write_replies(mut wr: tokio::net::tcp::OwnedWriteHalf, outbox: Arc<Outbox>) {
    enum Next {
        Send(Vec<u8>),
        Close,
        Wait,
        End,
    }
    loop {
        let next = {
            let mut g = outbox.inner.lock().expect("outbox lock");
            let bytes = std::mem::take(&mut g.backlog);
            if g.dead {
                Next::End
            } else if !bytes.is_empty() {
                Next::Send(bytes)
            } else if g.closing {
                Next::Close
            } else {
                g.busy = false;
                if g.reader_done && g.slots.is_empty() {
                    Next::End
                } else {
                    Next::Wait
                }
            }
        };
        match next {
            Next::Send(bytes) => {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
                outbox.room.notify_one();
            }
            Next::Close => {
                let _ = wr.shutdown().await;
                break;
            }
            Next::Wait => outbox.wake.notified().await,
            Next::End => break,
        }
    }
    {
        // Whatever ended the writer, nothing more is sent: later replies are dropped.
        let mut g = outbox.inner.lock().expect("outbox lock");
        g.dead = true;
        g.backlog = Vec::new();
    }
    outbox.registry.remove(outbox.id);
    outbox.room.notify_one();
}
