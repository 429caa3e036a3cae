//! One client connection: frames in, requests to the engine, replies out in request order.
//!
//! Requests are read and handed to the engine as they arrive, so a client that pipelines gets all of
//! them processed (the original processed one request per readable event and stalled the rest);
//! a writer task sends the replies strictly in request order. At most [`MAX_IN_FLIGHT`] requests per
//! connection wait for replies, so a client that never reads cannot make the server buffer without
//! bound.

use crate::cmd::COMMANDS;
use crate::engine::{CmdError, Job, Reply, Request};
use crate::frame::{self, Frame, FrameScanner};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

pub const MAX_IN_FLIGHT: usize = 1024;

/// What the writer sends next.
pub enum Outgoing {
    /// A reply still being computed by the engine, the context to echo with it, and what to
    /// record in the statistics (command and arrival time).
    Reply(
        oneshot::Receiver<Reply>,
        Value,
        &'static str,
        std::time::Instant,
    ),
    /// Bytes ready to send (errors found while parsing, OOB broadcasts).
    Ready(Vec<u8>),
    /// Send what came before, then close.
    Close,
}

/// What all connections share: every connection's outgoing queue (for `send_OOB` broadcasts) and
/// the request statistics.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    peers: Mutex<HashMap<u64, mpsc::Sender<Outgoing>>>,
    pub stats: crate::stats::Stats,
}

impl Registry {
    fn add(&self, tx: mpsc::Sender<Outgoing>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.peers.lock().expect("registry lock").insert(id, tx);
        id
    }

    fn remove(&self, id: u64) {
        self.peers.lock().expect("registry lock").remove(&id);
    }

    /// Sends an OOB message to every connection but `from`.
    fn broadcast(&self, from: u64, bytes: &[u8]) {
        for (id, tx) in self.peers.lock().expect("registry lock").iter() {
            if *id != from {
                let _ = tx.try_send(Outgoing::Ready(bytes.to_vec()));
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
        Some(Value::String(c)) => c,
        _ => return Err(lookup_failed("command")),
    };
    if !COMMANDS.contains(&command.as_str()) {
        return Err(lookup_failed(&command));
    }
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
pub async fn serve(socket: TcpStream, jobs: std::sync::mpsc::Sender<Job>, registry: Arc<Registry>) {
    let _ = socket.set_nodelay(true);
    let (mut rd, wr) = socket.into_split();
    let (tx, rx) = mpsc::channel::<Outgoing>(MAX_IN_FLIGHT);
    let id = registry.add(tx.clone());
    let writer = tokio::spawn(write_replies(wr, rx, registry.clone(), id));
    let mut scanner = FrameScanner::new();
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        scanner.extend(&buf[..n]);
        while let Some(f) = scanner.next_frame() {
            let out = match f {
                Frame::Object(bytes) => match parse_request(&bytes) {
                    Ok(Some((req, context))) => {
                        let name = COMMANDS
                            .iter()
                            .copied()
                            .find(|c| *c == req.command)
                            .unwrap_or("unknown");
                        let (reply_tx, reply_rx) = oneshot::channel();
                        if jobs.send(Job::Run(req, reply_tx)).is_err() {
                            break 'read; // the server is stopping
                        }
                        Outgoing::Reply(reply_rx, context, name, std::time::Instant::now())
                    }
                    Ok(None) => continue,
                    Err(bytes) => Outgoing::Ready(bytes),
                },
                Frame::Garbage(n) => Outgoing::Ready(einval(format!(
                    "ignored {n} byte(s) that are not a JSON object: each request must be one JSON object"
                ))),
                Frame::TooLarge => {
                    let _ = tx
                        .send(Outgoing::Ready(frame::error(
                            &format!(
                                "request larger than {} MiB: closing the connection",
                                frame::MAX_FRAME_BYTES >> 20
                            ),
                            libc::EMSGSIZE,
                        )))
                        .await;
                    let _ = tx.send(Outgoing::Close).await;
                    drain(&mut rd).await;
                    break 'read;
                }
            };
            if tx.send(out).await.is_err() {
                break 'read;
            }
        }
    }
    drop(tx);
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

async fn write_replies(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    registry: Arc<Registry>,
    id: u64,
) {
    let mut out = Vec::with_capacity(4096);
    while let Some(item) = rx.recv().await {
        let mut oob = None;
        match item {
            Outgoing::Ready(bytes) => out.extend_from_slice(&bytes),
            Outgoing::Close => {
                let _ = wr.write_all(&out).await;
                let _ = wr.shutdown().await;
                registry.remove(id);
                return;
            }
            Outgoing::Reply(reply, context, command, arrived) => {
                let reply = reply
                    .await
                    .unwrap_or_else(|_| Err(CmdError::new(libc::EIO, "the server is stopping")));
                registry
                    .stats
                    .record(command, arrived.elapsed(), reply.is_ok());
                match reply {
                    Ok(o) => {
                        out.extend_from_slice(&frame::success(&o.value, &context));
                        oob = o.oob;
                    }
                    Err(e) => out.extend_from_slice(&frame::error(&e.msg, e.errno)),
                }
            }
        }
        if wr.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
        if let Some(msg) = oob {
            registry.broadcast(id, &frame::oob(&msg));
        }
    }
    registry.remove(id);
}
