//! The host side of the guest agent (see `guest/proto.rs`): `fame exec`, `/lfs` probes and
//! clean shutdowns of VM nodes, over TCP to the node's address on the cluster network.

use super::proto::*;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

fn connect(ip: Ipv4Addr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&SocketAddr::from((ip, AGENT_PORT)), timeout)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `Some(true)` if the node's `/lfs` is mounted, `Some(false)` if not, `None` if the agent
/// does not answer (yet).
pub fn lfs_mounted(ip: Ipv4Addr) -> Option<bool> {
    let mut s = connect(ip, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write_frame(&mut s, STATUS, b"").ok()?;
    match read_frame(&mut s).ok()?? {
        (STATUS, d) => Some(d == b"lfs=mounted"),
        _ => None,
    }
}

/// Asks the node to unmount `/lfs` and power off; `false` if the agent did not answer.
pub fn shutdown(ip: Ipv4Addr) -> bool {
    let Ok(mut s) = connect(ip, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(8)));
    write_frame(&mut s, SHUTDOWN, b"").is_ok() && matches!(read_frame(&mut s), Ok(Some((EXIT, _))))
}

/// Runs `argv` in the node, passing stdin, stdout and stderr through; returns its exit status.
pub fn exec(node: &str, ip: Ipv4Addr, argv: &[OsString]) -> Result<i32> {
    let mut s = connect(ip, Duration::from_secs(3)).with_context(|| {
        format!("{node}: its agent at {ip}:{AGENT_PORT} does not answer; `fame status` shows whether the node is up, its console log is under nodes/{node}/")
    })?;
    let args: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    write_frame(&mut s, EXEC, &encode_argv(&args))?;
    let mut input = s.try_clone()?;
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = write_frame(&mut input, STDIN, b"");
                    return;
                }
                Ok(n) => {
                    if write_frame(&mut input, STDIN, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    loop {
        match read_frame(&mut s).with_context(|| format!("{node}: connection to its agent lost"))? {
            Some((STDOUT, d)) => {
                out.write_all(&d)?;
                out.flush()?;
            }
            Some((STDERR, d)) => {
                err.write_all(&d)?;
                err.flush()?;
            }
            Some((EXIT, d)) if d.len() == 4 => {
                return Ok(i32::from_be_bytes([d[0], d[1], d[2], d[3]]));
            }
            Some((ERROR, d)) => bail!("{node}: {}", String::from_utf8_lossy(&d)),
            Some(_) => {}
            None => bail!("{node}: its agent closed the connection before the command finished (did the node stop?)"),
        }
    }
}
