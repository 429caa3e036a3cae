//! The Librarian going away: open files keep working and writers lose nothing they were told was
//! written; calls wait for a restart, or fail with EIO after --librarian-timeout; heartbeats carry
//! real figures.

use fame_tests::*;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn librarian_restart_under_load_loses_no_acknowledged_data() {
    let mut c = Cluster::two(&["--librarian-timeout", "60"]);
    let a_mnt = c.node(0).mnt.clone();
    // An open file that is read and overwritten during the outage without the Librarian.
    fs::write(c.node(0).path("steady"), pattern(5, 0, 1 << 20)).unwrap();
    let steady = OpenOptions::new()
        .read(true)
        .write(true)
        .open(c.node(0).path("steady"))
        .unwrap();

    // Writers append 64 KiB records (growing files needs the Librarian) and count what was
    // acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = vec![];
    for (i, mnt) in [a_mnt.clone(), c.node(1).mnt.clone()]
        .into_iter()
        .enumerate()
    {
        let stop = stop.clone();
        let acked = Arc::new(AtomicU64::new(0));
        let a2 = acked.clone();
        let h = std::thread::spawn(move || {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(mnt.join(format!("log{i}")))
                .unwrap();
            let mut pos = 0u64;
            // At most 96 MiB each, so the 512 MiB pool never fills.
            while !stop.load(Ordering::SeqCst) {
                if pos >= 96 << 20 {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                std::thread::sleep(Duration::from_millis(1));
                let rec = pattern(100 + i as u64, pos, 65536);
                f.write_all(&rec)
                    .unwrap_or_else(|e| panic!("writer {i} at {pos}: {e}"));
                pos += rec.len() as u64;
                a2.store(pos, Ordering::SeqCst);
            }
        });
        writers.push((h, acked));
    }
    let progress = |w: &[(std::thread::JoinHandle<()>, Arc<AtomicU64>)]| {
        w.iter()
            .map(|x| x.1.load(Ordering::SeqCst))
            .collect::<Vec<_>>()
    };
    wait_for("writers to start", Duration::from_secs(30), || {
        progress(&writers).iter().all(|&p| p > 0)
    });

    for round in 0..2 {
        c.lib.stop();
        // Data inside the open file's size needs no Librarian.
        let mut buf = vec![0u8; 4096];
        steady.read_exact_at(&mut buf, 12_345).unwrap();
        assert_eq!(buf, pattern(5, 12_345, 4096));
        steady
            .write_all_at(b"written during the outage", 100)
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        c.lib.launch();
        let before = progress(&writers);
        wait_for(
            "writers to go on after the restart",
            Duration::from_secs(60),
            || {
                progress(&writers)
                    .iter()
                    .zip(&before)
                    .all(|(now, then)| now > then || *now >= 96 << 20)
            },
        );
        eprintln!("round {round}: acknowledged {:?}", progress(&writers));
    }
    stop.store(true, Ordering::SeqCst);
    let acked = progress(&writers);
    for (h, _) in writers {
        h.join().unwrap();
    }

    // Everything acknowledged is there, seen from the other node.
    for (i, len) in acked.iter().enumerate() {
        let other = c.node(1 - i);
        let data = fs::read(other.path(&format!("log{i}"))).unwrap();
        assert!(
            data.len() as u64 >= *len,
            "log{i}: {} bytes, {len} acknowledged",
            data.len()
        );
        let want = pattern(100 + i as u64, 0, *len as usize);
        if let Some(k) = data[..*len as usize]
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
        {
            panic!("log{i}: acknowledged data differs at offset {k}");
        }
    }
    let mut buf = vec![0u8; 25];
    steady.read_exact_at(&mut buf, 100).unwrap();
    assert_eq!(&buf, b"written during the outage");
    assert_eq!(
        &fs::read(c.node(1).path("steady")).unwrap()[100..125],
        b"written during the outage"
    );
    // The open survived the restarts: unlinking it is still refused.
    assert_eq!(
        errno(&fs::remove_file(c.node(1).path("steady")).unwrap_err()),
        libc::EBUSY
    );
    drop(steady);
    fs::remove_file(c.node(1).path("steady")).unwrap();
}

#[test]
fn calls_fail_with_eio_after_the_timeout_and_recover() {
    let mut c = Cluster::two(&["--librarian-timeout", "2"]);
    let a = c.node(0).path("f");
    fs::write(&a, b"data").unwrap();
    c.lib.stop();
    let t = Instant::now();
    let e = fs::metadata(&a).unwrap_err();
    assert_eq!(errno(&e), libc::EIO, "{e}");
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "gave up before waiting"
    );
    // Once it has been down longer than the timeout, calls fail at once (no pile-up).
    assert_eq!(
        errno(&fs::create_dir(c.node(0).path("d")).unwrap_err()),
        libc::EIO
    );
    c.lib.launch();
    wait_for("the mount to answer again", Duration::from_secs(30), || {
        fs::metadata(&a).is_ok()
    });
    assert_eq!(fs::read(c.node(1).path("f")).unwrap(), b"data");
    fs::create_dir(c.node(0).path("d")).unwrap();
}

#[test]
fn heartbeats_report_real_figures() {
    let c = Cluster::two(&[]);
    // The first periodic heartbeat (10 s after mount) fills in the node's SOC row.
    let db = rusqlite::Connection::open(&c.lib.db).unwrap();
    let row = || -> (i64, i64, i64, i64) {
        db.query_row(
            "SELECT status, mem_percent, rootfs_percent, heartbeat FROM SOCs WHERE node_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    };
    wait_for(
        "the first periodic heartbeat",
        Duration::from_secs(30),
        || row().1 > 0,
    );
    let (status, mem, rootfs, hb) = row();
    assert_eq!(status, 1);
    assert!(mem > 0 && mem <= 100, "mem_percent {mem}");
    assert!(rootfs > 0 && rootfs <= 100, "rootfs_percent {rootfs}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(now - hb < 30, "heartbeat {hb} is stale (now {now})");
}
