//! A small blocking Librarian client: one request at a time, like the original FUSE client.
//! Used by the tests, the load generator and the node daemon.

use crate::frame::{self, Frame, FrameScanner};
use crate::request::{self, BadReply, Request};
use crate::Command;
use serde_json::{json, Map, Value};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The Librarian answered with an error.
    #[error("{msg} (errno {errno})")]
    Remote { errno: i32, msg: String },
    #[error("connection to the Librarian failed: {0}")]
    Io(#[from] io::Error),
    #[error("bad reply from the Librarian: {0}")]
    Protocol(String),
    /// A reply whose value is not what the command answers ([`Client::call_typed`]).
    #[error(transparent)]
    BadReply(#[from] BadReply),
}

impl ClientError {
    /// The errno to report to a caller (EIO for transport and protocol failures).
    pub fn errno(&self) -> i32 {
        match self {
            ClientError::Remote { errno, .. } => *errno,
            _ => libc::EIO,
        }
    }
}

pub struct Client {
    stream: TcpStream,
    scanner: FrameScanner,
    context: Map<String, Value>,
    seq: i64,
    /// Out-of-band messages received while waiting for replies.
    pub oob: Vec<Value>,
}

impl Client {
    /// Connects and identifies as `node_id` (physloc and pid are derived or set later).
    pub fn connect(addr: impl ToSocketAddrs, node_id: i64) -> io::Result<Client> {
        Client::over(TcpStream::connect(addr)?, node_id)
    }

    /// As [`connect`](Self::connect) to one address, the TCP connect bounded by `timeout` (a
    /// Librarian host that drops packets would otherwise hold it for the kernel's SYN retries,
    /// about two minutes).
    pub fn connect_timeout(
        addr: &SocketAddr,
        node_id: i64,
        timeout: Duration,
    ) -> io::Result<Client> {
        Client::over(TcpStream::connect_timeout(addr, timeout)?, node_id)
    }

    fn over(stream: TcpStream, node_id: i64) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        let mut context = Map::new();
        context.insert("node_id".into(), json!(node_id));
        context.insert("pid".into(), json!(std::process::id()));
        context.insert("uid".into(), json!(0));
        context.insert("gid".into(), json!(0));
        context.insert("seq".into(), json!(0));
        Ok(Client {
            stream,
            scanner: FrameScanner::new(),
            context,
            seq: 0,
            oob: vec![],
        })
    }

    pub fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)?;
        self.stream.set_write_timeout(t)
    }

    /// A second handle on the connection's socket, e.g. to `shutdown` it from another thread so
    /// that a call blocked waiting for a reply returns at once.
    pub fn try_clone_stream(&self) -> io::Result<TcpStream> {
        self.stream.try_clone()
    }

    /// Sets a context field sent with every request (e.g. `pid`, `physloc`).
    pub fn set_context(&mut self, key: &str, value: Value) {
        self.context.insert(key.into(), value);
    }

    /// Sends a command and returns its `value`, or the Librarian's error.
    pub fn call(&mut self, command: Command, params: Value) -> Result<Value, ClientError> {
        self.call_named(command.name(), params)
    }

    /// Sends a typed request (its command and parameters from one value) and reads the reply as
    /// the command's reply type.
    pub fn call_typed<R: Request>(&mut self, req: &R) -> Result<R::Reply, ClientError> {
        let v = self.call(R::COMMAND, req.params())?;
        Ok(request::read_reply::<R>(&v)?)
    }

    /// As [`call`](Self::call) with the command given by its wire name, for tests and tools that
    /// send what the table does not hold (an unknown command, a name from a replay).
    pub fn call_named(&mut self, command: &str, params: Value) -> Result<Value, ClientError> {
        self.seq += 1;
        self.context.insert("seq".into(), json!(self.seq));
        let mut req = Map::new();
        req.insert("command".into(), json!(command));
        req.insert("context".into(), Value::Object(self.context.clone()));
        if let Value::Object(p) = params {
            req.extend(p);
        }
        let mut bytes = Vec::with_capacity(256);
        frame::write_ascii(&mut bytes, &Value::Object(req));
        self.send_raw(&bytes)?;
        let reply = self.read_reply()?;
        if let Some(msg) = reply.get("errmsg") {
            return Err(ClientError::Remote {
                errno: reply.get("errno").and_then(Value::as_i64).unwrap_or(0) as i32,
                msg: msg.as_str().unwrap_or_default().to_string(),
            });
        }
        let seq = reply.get("context").and_then(|c| c.get("seq"));
        if seq != Some(&json!(self.seq)) {
            return Err(ClientError::Protocol(format!(
                "reply sequence {seq:?} does not match request {}",
                self.seq
            )));
        }
        reply
            .get("value")
            .cloned()
            .ok_or_else(|| ClientError::Protocol("reply has no value".into()))
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads the next reply object, setting aside OOB messages.
    pub fn read_reply(&mut self) -> Result<Value, ClientError> {
        let mut buf = [0u8; 65536];
        loop {
            while let Some(f) = self.scanner.next_frame() {
                match f {
                    Frame::Object(bytes) => {
                        let v: Value = serde_json::from_slice(&bytes)
                            .map_err(|e| ClientError::Protocol(e.to_string()))?;
                        if let Some(m) = v.get("OOBmsg").filter(|m| !m.is_null()) {
                            self.oob.push(m.clone());
                            continue;
                        }
                        return Ok(v);
                    }
                    other => return Err(ClientError::Protocol(format!("{other:?}"))),
                }
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the Librarian closed the connection",
                )));
            }
            self.scanner.extend(&buf[..n]);
        }
    }
}
