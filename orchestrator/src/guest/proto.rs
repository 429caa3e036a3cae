//! The wire protocol between `fame exec` on the host and `fame-guest agent` in a VM node.
//!
//! One TCP connection per request on the cluster's isolated libvirt network (the agent answers
//! only the torms address). Frames are a kind byte, a big-endian `u32` length and the payload.
//! The first frame from the host is the request:
//!
//! * [`EXEC`]: NUL-separated argv. Then the host sends [`STDIN`] frames (an empty one closes the
//!   command's stdin); the agent sends [`STDOUT`], [`STDERR`] and finally [`EXIT`] (`i32`, the
//!   shell's convention: 128 + signal for a command killed by a signal) or [`ERROR`] (text).
//!   If the connection drops, the agent kills the command.
//! * [`STATUS`]: the agent answers one [`STATUS`] frame, `lfs=mounted` or `lfs=not-mounted`.
//! * [`SHUTDOWN`]: the agent stops `lfs-node` (which unmounts `/lfs`), answers [`EXIT`] 0 and
//!   powers the VM off.
//!
//! This file is compiled into both `fame` and `fame-guest` (`#[path]`), so the two always agree.

#![allow(dead_code)]

use std::io::{self, Read, Write};

/// The agent's TCP port in every VM node.
pub const AGENT_PORT: u16 = 5193;
/// Printed on the console by a guest booted with `fame.probe=1` (the acceleration probe).
pub const PROBE_MARKER: &str = "FAME-GUEST-PROBE-OK";

pub const EXEC: u8 = b'X';
pub const STATUS: u8 = b'S';
pub const SHUTDOWN: u8 = b'H';
pub const STDIN: u8 = b'0';
pub const STDOUT: u8 = b'1';
pub const STDERR: u8 = b'2';
pub const EXIT: u8 = b'R';
pub const ERROR: u8 = b'!';

/// Frames larger than this are refused (a garbled stream, not a real frame).
pub const MAX_FRAME: u32 = 16 << 20;

pub fn write_frame(w: &mut impl Write, kind: u8, data: &[u8]) -> io::Result<()> {
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    let mut buf = Vec::with_capacity(5 + data.len());
    buf.extend_from_slice(&head);
    buf.extend_from_slice(data);
    w.write_all(&buf)?;
    w.flush()
}

/// The next frame, or `None` at a clean end of the stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..])?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes: not a fame agent stream"),
        ));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    Ok(Some((head[0], data)))
}

/// argv as one payload.
pub fn encode_argv<S: AsRef<[u8]>>(argv: &[S]) -> Vec<u8> {
    let mut out = vec![];
    for (i, a) in argv.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(a.as_ref());
    }
    out
}

pub fn decode_argv(data: &[u8]) -> Vec<Vec<u8>> {
    if data.is_empty() {
        return vec![];
    }
    data.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = vec![];
        write_frame(&mut buf, EXEC, &encode_argv(&["sh", "-c", "echo hi"])).unwrap();
        write_frame(&mut buf, STDIN, b"").unwrap();
        let mut r = &buf[..];
        let (k, d) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(k, EXEC);
        assert_eq!(
            decode_argv(&d),
            vec![b"sh".to_vec(), b"-c".to_vec(), b"echo hi".to_vec()]
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some((STDIN, vec![])));
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn garbage_lengths_are_refused() {
        let buf = [EXEC, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut &buf[..]).is_err());
    }
}
