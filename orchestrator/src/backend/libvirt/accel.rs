//! Choosing QEMU's accelerator. `/dev/kvm` existing is not enough: on nested hosts QEMU's BIOS
//! runs under KVM but a Linux guest hangs at early boot. So `auto` boots the real guest image
//! once under KVM with `fame.probe=1` (its init prints a marker and powers off at once) and uses
//! KVM only if the marker shows up on the console within [`PROBE_TIMEOUT`]; the answer is cached
//! per host kernel and guest image in `FAME_HOME/cache/accel.json`.

use super::image::Image;
use super::proto::PROBE_MARKER;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// libvirt's domain type.
    pub fn domain_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// `--accel` values.
pub fn check_flag(v: &str) -> Result<()> {
    if !["auto", "kvm", "tcg"].contains(&v) {
        bail!("--accel {v}: the accelerators are auto (KVM if a guest really boots under it, else TCG), kvm and tcg; try --accel auto");
    }
    Ok(())
}

/// Whether `/dev/kvm` can be opened; the error says why not.
pub fn kvm_device() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm cannot be opened ({e})"))
}

#[derive(Serialize, Deserialize, Default)]
struct Cache {
    /// key -> whether a guest booted under KVM.
    kvm_boots: std::collections::BTreeMap<String, bool>,
}

fn cache_path() -> PathBuf {
    crate::cluster::cache_dir().join("accel.json")
}

fn cache_key(image: &Image) -> String {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    format!("{release}/{}", image.key)
}

/// What `wanted` (auto, kvm, tcg) means on this host; the string says how it was decided.
pub fn resolve(
    conn: &virt::connect::Connect,
    wanted: &str,
    image: &Image,
    probe_dir: &Path,
) -> Result<(Accel, String)> {
    if wanted == "tcg" {
        return Ok((Accel::Tcg, "tcg (--accel tcg)".into()));
    }
    if let Err(why) = kvm_device() {
        if wanted == "kvm" {
            bail!("--accel kvm: {why}; load kvm (modprobe kvm_intel or kvm_amd), or use --accel tcg or --accel auto");
        }
        return Ok((Accel::Tcg, format!("tcg ({why})")));
    }
    let key = cache_key(image);
    let mut cache: Cache = std::fs::read_to_string(cache_path())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let (boots, how) = match cache.kvm_boots.get(&key) {
        Some(&b) => (b, "cached probe"),
        None => {
            let t = Instant::now();
            let b = probe(conn, image, probe_dir)?;
            tracing::info!(
                "KVM probe: guest booted: {b} ({:.1} s)",
                t.elapsed().as_secs_f64()
            );
            cache.kvm_boots.insert(key, b);
            if let Some(d) = cache_path().parent() {
                let _ = std::fs::create_dir_all(d);
            }
            let _ = std::fs::write(cache_path(), serde_json::to_string_pretty(&cache)?);
            (b, "probe")
        }
    };
    match (boots, wanted) {
        (true, _) => Ok((Accel::Kvm, format!("kvm ({how}: a guest boots under KVM)"))),
        (false, "kvm") => bail!(
            "--accel kvm: /dev/kvm is there but a test guest did not boot under KVM within {} s ({how}; nested virtualization?); use --accel tcg or --accel auto (rm {} to probe again)",
            PROBE_TIMEOUT.as_secs(),
            cache_path().display()
        ),
        (false, _) => Ok((Accel::Tcg, format!("tcg ({how}: a guest hangs under KVM)"))),
    }
}

/// Boots `image` under KVM as a transient domain without network or FAM and waits for the marker.
fn probe(conn: &virt::connect::Connect, image: &Image, dir: &Path) -> Result<bool> {
    let name = format!("fame-probe-{}", std::process::id());
    let console = dir.join(format!("{name}.console.log"));
    let _ = std::fs::remove_file(&console);
    let xml = super::render_domain(&super::DomainParams {
        name: &name,
        cluster: "-",
        node: "probe",
        marker: "fame-accel-probe",
        domain_type: "kvm",
        memory_kib: 128 * 1024,
        vcpus: 1,
        kernel: &image.kernel,
        initrd: &image.initrd,
        cmdline: "console=ttyS0 quiet panic=-1 no_timer_check fame.probe=1",
        network: None,
        mac: "",
        console_log: &console,
        fam: None,
        fam_bytes: 0,
        filesystems: &[],
    })?;
    let dom = match conn.create_domain_xml(&xml, 0) {
        Ok(d) => d,
        Err(e) => {
            tracing::info!("KVM probe domain did not start: {e}");
            let _ = std::fs::remove_file(&console);
            return Ok(false);
        }
    };
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut ok = false;
    while Instant::now() < deadline {
        if std::fs::read_to_string(&console).is_ok_and(|t| t.contains(PROBE_MARKER)) {
            ok = true;
            break;
        }
        if !dom.is_active().unwrap_or(false) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if dom.is_active().unwrap_or(false) {
        let _ = dom.destroy();
    }
    super::remove_qemu_log(&name);
    let _ = std::fs::remove_file(&console);
    Ok(ok)
}
