//! `fame-guest`: the part of fame that runs inside a VM node (put into the guest image by
//! `fame up --backend libvirt`). `fame-guest agent --allow TORMS_IP` serves `fame exec`, node
//! probes and shutdowns over TCP (see `guest/proto.rs`); only std and libc, so the binary stays
//! small.

#[path = "../guest/proto.rs"]
mod proto;

use proto::*;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!("usage: fame-guest agent --allow IP [--port PORT]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("agent") {
        usage();
    }
    let mut allow: Option<IpAddr> = None;
    let mut port = AGENT_PORT;
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--allow" => allow = it.next().and_then(|v| v.parse().ok()),
            "--port" => {
                port = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            _ => usage(),
        }
    }
    let Some(allow) = allow else { usage() };
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fame-guest: cannot listen on port {port}: {e}");
            std::process::exit(1)
        }
    };
    eprintln!("fame-guest: agent listening on port {port} for {allow}");
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let peer = conn.peer_addr().map(|a| a.ip()).ok();
        if peer != Some(allow) && !peer.is_some_and(|p| p.is_loopback()) {
            continue;
        }
        std::thread::spawn(move || {
            if let Err(e) = serve(conn) {
                eprintln!("fame-guest: {e}");
            }
        });
    }
}

fn serve(mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let Some((kind, data)) = read_frame(&mut conn)? else {
        return Ok(());
    };
    match kind {
        STATUS => {
            let state = if lfs_mounted() {
                "lfs=mounted"
            } else {
                "lfs=not-mounted"
            };
            write_frame(&mut conn, STATUS, state.as_bytes())
        }
        SHUTDOWN => {
            stop_lfs_node(Duration::from_secs(5));
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
            let _ = write_frame(&mut conn, EXIT, &0i32.to_be_bytes());
            drop(conn);
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: reboot(2) with a valid command; the agent is PID 1's helper in a VM that
            // is meant to power off here.
            unsafe { libc::reboot(libc::RB_POWER_OFF) };
            Ok(())
        }
        EXEC => exec(conn, decode_argv(&data)),
        _ => write_frame(&mut conn, ERROR, b"unknown request"),
    }
}

/// Whether `/lfs` is a FUSE mount now.
fn lfs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.get(4) == Some(&"/lfs") && l.contains(" - fuse")
        })
    })
}

fn lfs_node_pids() -> Vec<i32> {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "lfs-node")
        })
        .collect()
}

/// SIGTERM to lfs-node (it unmounts /lfs), SIGKILL after `grace`.
fn stop_lfs_node(grace: Duration) {
    let pids = lfs_node_pids();
    for &p in &pids {
        // SAFETY: kill(2) with a pid read from /proc and a valid signal; a pid gone meanwhile
        // only gives ESRCH.
        unsafe { libc::kill(p, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while !lfs_node_pids().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in lfs_node_pids() {
        // SAFETY: as above: kill(2) of a pid from /proc with a valid signal.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
}

fn exec(conn: TcpStream, argv: Vec<Vec<u8>>) -> std::io::Result<()> {
    let out = Arc::new(Mutex::new(conn.try_clone()?));
    let send = |kind: u8, data: &[u8]| -> std::io::Result<()> {
        let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
        write_frame(&mut *w, kind, data)
    };
    if argv.is_empty() || argv[0].is_empty() {
        return send(ERROR, b"no command given");
    }
    let argv: Vec<std::ffi::OsString> =
        argv.into_iter().map(std::ffi::OsString::from_vec).collect();
    let spawned = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir("/")
        // The init's PATH (on the host's root it starts with fame's bin dir).
        .env(
            "PATH",
            std::env::var_os("PATH")
                .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let code: i32 = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let msg = format!("{}: {e}\n", argv[0].to_string_lossy());
            send(STDERR, msg.as_bytes())?;
            return send(EXIT, &code.to_be_bytes());
        }
    };
    let pid = child.id() as i32;
    // Set once the command is reaped: its pid may then belong to another process.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kill = {
        let done = Arc::clone(&done);
        move || {
            if !done.load(std::sync::atomic::Ordering::SeqCst) {
                // SAFETY: kill(2) with a valid signal touches no memory of ours. The pid is our
                // child's until it is reaped; `done` is set right after, so a reused pid is not
                // signalled (but for the moment between the two, as with any pid-based kill).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    };
    let mut pumps = vec![];
    for (kind, pipe) in [
        (
            STDOUT,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            STDERR,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(mut pipe) = pipe else { continue };
        let out = Arc::clone(&out);
        let kill = kill.clone();
        pumps.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
                        if write_frame(&mut *w, kind, &buf[..n]).is_err() {
                            // The host is gone: so is the command.
                            kill();
                            break;
                        }
                    }
                }
            }
        }));
    }
    // Input from the host; a dropped connection kills the command.
    let mut stdin = child.stdin.take();
    let mut input = conn;
    std::thread::spawn(move || loop {
        match read_frame(&mut input) {
            Ok(Some((STDIN, data))) if data.is_empty() => stdin = None,
            Ok(Some((STDIN, data))) => {
                if let Some(s) = stdin.as_mut() {
                    if s.write_all(&data).is_err() {
                        stdin = None;
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                kill();
                break;
            }
        }
    });
    let status = child.wait()?;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for p in pumps {
        let _ = p.join();
    }
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    send(EXIT, &code.to_be_bytes())
}
