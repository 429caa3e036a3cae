//! The libvirt backend: every node is a QEMU VM, as in FAME proper.
//!
//! * **Network**: one transient, isolated libvirt network per cluster, `fame-NAME` on bridge
//!   `br_NAME`, subnet `--subnet` (default the first free of 192.168.42.0/24, .43, ...): the host
//!   is `torms` at `.254` and the Librarian listens there only; node N is `nodeNN` at `.N`, MAC
//!   `48:50:42:NN:NN:NN`, with DHCP host entries and DNS names (templates/libvirt/network.xml).
//! * **Domains**: transient (nothing stays defined in libvirt once destroyed), from
//!   templates/libvirt/domain.xml: direct kernel boot of the guest image ([`image`]), ACPI, the
//!   serial console logged to `nodes/NODE/console.log`, and the FAM file as `ivshmem-plain` at
//!   PCI address 0x10 (a `memory-backend-file` with `share=on`, so every VM and the host see the
//!   same bytes). The domain's `<description>` carries the cluster directory, so `fame down`
//!   finds every VM of a cluster even after fame was killed before it saved them.
//! * **Guest root**: with `--guest-root host` (the default) a node runs on the host's own root
//!   file system, read-only over virtiofs under a tmpfs overlay of its own, so every program of
//!   the host (and every binary just built) runs in it; `--shares` are virtiofs too. fame starts
//!   the virtiofsds ([`virtiofs`]). With `--guest-root initramfs` it runs on the image alone.
//! * **Accelerator**: [`accel`]: KVM only if a guest really boots under it.
//! * **exec, probes, clean stops**: `fame-guest agent` in the VM ([`agent`], `guest/proto.rs`).
//!
//! What `prepare` decided is kept in `nodes/libvirt.json` in the cluster directory.

pub mod accel;
pub mod agent;
pub mod image;
#[path = "../../guest/proto.rs"]
pub mod proto;
pub mod virtiofs;

use super::{
    console_log, Backend, Capabilities, ClusterCtx, DaemonSpec, DaemonView, LfsState, NodeHandle,
    Probe,
};
use crate::procs::ProcRef;
use crate::progress::Step;
use crate::state::{ClusterState, Node, Settings};
use anyhow::{anyhow, bail, Context, Result};
use image::GuestRoot;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};

/// libvirt URI (default `qemu:///system`).
pub const URI_ENV: &str = "FAME_LIBVIRT_URI";
pub const DEFAULT_URI: &str = "qemu:///system";
pub const DEFAULT_MEMORY_KIB: u64 = 256 * 1024;
pub const MIN_MEMORY_KIB: u64 = 128 * 1024;
pub const DEFAULT_VCPUS: u32 = 1;
pub const MAX_VCPUS: u32 = 16;
/// TCG's translation cache per VM (QEMU's default is 1 GiB).
pub const TB_CACHE_MIB: u64 = 64;
/// Host memory a VM costs besides its RAM (QEMU itself, TCG's cache), for the memory check.
pub const OVERHEAD_KIB: u64 = (TB_CACHE_MIB + 96) * 1024;
pub const EMULATOR: &str = "/usr/bin/qemu-system-x86_64";
const DOMAIN_TEMPLATE: &str = include_str!("../../../../templates/libvirt/domain.xml");
const NETWORK_TEMPLATE: &str = include_str!("../../../../templates/libvirt/network.xml");

/// The cluster's network and guest image are shared; nodes are VMs sized by `--vcpus` and
/// `--memory`, started one at a time; the fault proxy cuts them off.
pub const CAPABILITIES: Capabilities = Capabilities {
    shared_parts: true,
    sizes_nodes: true,
    start_concurrency: 1,
    cuts_network: false,
};

pub struct LibvirtBackend {
    cx: ClusterCtx,
    /// What `prepare` decided (`nodes/libvirt.json`), read once.
    net: Mutex<Option<ClusterNet>>,
    /// When each node was last probed, to keep polling from flooding TCG guests.
    last_probe: Mutex<HashMap<String, Instant>>,
}

impl LibvirtBackend {
    pub fn new(cx: ClusterCtx) -> Self {
        LibvirtBackend {
            cx,
            net: Mutex::new(None),
            last_probe: Mutex::new(HashMap::new()),
        }
    }

    /// What `prepare` decided for the cluster: read from its file at the first call after it,
    /// then kept (it does not change while the cluster exists).
    fn config(&self) -> Result<ClusterNet> {
        let mut held = self.net.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = held.as_ref() {
            return Ok(c.clone());
        }
        let c = load_config(self.cx.dir())?;
        *held = Some(c.clone());
        Ok(c)
    }

    /// Saves what `prepare` decided, and keeps it.
    fn save_config(&self, c: &ClusterNet) -> Result<()> {
        save_config(self.cx.dir(), c)?;
        *self.net.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(())
    }

    fn domain_of(&self, node: &Node) -> Result<Domain> {
        let cfg = self.config()?;
        let conn = connect()?;
        let name = domain_name(&cfg.cluster, &node.name);
        conn.lookup_domain_by_name(&name)
            .map_err(|_| anyhow!("{} is not running (no VM {name})", node.name))
    }
}

/// `nodes/libvirt.json`: what `prepare` decided for the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterNet {
    pub cluster: String,
    pub network: String,
    pub bridge: String,
    pub subnet: String,
    pub base: Ipv4Addr,
    pub prefix: u8,
    pub torms: Ipv4Addr,
    pub accel: String,
    pub domain_type: String,
    pub vcpus: u32,
    pub memory_kib: u64,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub image_key: String,
    pub fam: PathBuf,
    pub fam_bytes: u64,
    pub librarian_port: u16,
    /// What the nodes run on (clusters made before `--guest-root` ran on the initramfs).
    #[serde(default = "initramfs")]
    pub guest_root: GuestRoot,
    /// Sub-phases of `prepare`, in seconds.
    pub timings: Vec<(String, f64)>,
}

fn initramfs() -> GuestRoot {
    GuestRoot::Initramfs
}

fn uri() -> String {
    std::env::var(URI_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_URI.into())
}

/// A connection to libvirtd, or an error saying how to get one.
pub fn connect() -> Result<Connect> {
    virt::error::clear_error_callback();
    Connect::open(Some(&uri())).map_err(|e| {
        anyhow!(
            "cannot reach libvirtd at {} ({}): the libvirt backend needs it running; start it with `virtlogd -d && libvirtd -d` (packages libvirt-daemon-system, qemu-system-x86), or set {URI_ENV}",
            uri(),
            e.message()
        )
    })
}

fn config_path(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("nodes").join("libvirt.json")
}

fn load_config(cluster_dir: &Path) -> Result<ClusterNet> {
    let p = config_path(cluster_dir);
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "cannot read {} (the cluster's VM settings); `fame rebuild` recreates the cluster",
            p.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is damaged", p.display()))
}

fn save_config(cluster_dir: &Path, c: &ClusterNet) -> Result<()> {
    let p = config_path(cluster_dir);
    std::fs::write(&p, serde_json::to_string_pretty(c)? + "\n")
        .with_context(|| format!("cannot write {}", p.display()))
}

pub fn network_name(cluster: &str) -> String {
    format!("fame-{cluster}")
}
pub fn bridge_name(cluster: &str) -> String {
    format!("br_{cluster}")
}
pub fn domain_name(cluster: &str, node: &str) -> String {
    format!("fame-{cluster}-{node}")
}
pub fn mac(id: u32) -> String {
    format!("48:50:42:{id:02}:{id:02}:{id:02}")
}
fn marker(cluster_dir: &Path) -> String {
    format!("fame-cluster-dir={}", cluster_dir.display())
}
fn node_ip(base: Ipv4Addr, id: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + id)
}
fn qemu_log(domain: &str) -> PathBuf {
    PathBuf::from(format!("/var/log/libvirt/qemu/{domain}.log"))
}

/// libvirt keeps a QEMU log per domain name in /var/log/libvirt/qemu; fame removes it with the
/// domain so that nothing of a cluster stays on the host.
pub fn remove_qemu_log(domain: &str) {
    let log = qemu_log(domain);
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(log.with_extension("log.0"));
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// `A.B.C.D/P` with 16 <= P <= 24 and no host bits: node ids up to 80 and torms at .254 fit.
pub fn parse_subnet(s: &str) -> Result<(Ipv4Addr, u8)> {
    let fail = |why: &str| {
        anyhow!("--subnet {s}: {why}; give an IPv4 network like 192.168.42.0/24 (prefix 16 to 24)")
    };
    let (a, p) = s.split_once('/').ok_or_else(|| fail("no /PREFIX"))?;
    let ip: Ipv4Addr = a.parse().map_err(|_| fail("not an IPv4 address"))?;
    let prefix: u8 = p.parse().map_err(|_| fail("the prefix is not a number"))?;
    if !(16..=24).contains(&prefix) {
        return Err(fail(
            "the prefix must be 16 to 24 (nodes are .1 to .80, torms .254)",
        ));
    }
    let mask = u32::MAX << (32 - prefix);
    if u32::from(ip) & !mask != 0 {
        return Err(fail("host bits are set"));
    }
    Ok((ip, prefix))
}

fn torms_of(base: Ipv4Addr) -> Ipv4Addr {
    node_ip(base, 254)
}

/// Whether the subnet clashes with a libvirt network or an address of the host; says with what.
fn subnet_taken(conn: &Connect, base: Ipv4Addr, prefix: u8) -> Option<String> {
    let mask = u32::MAX << (32 - prefix);
    let inside = |ip: Ipv4Addr| u32::from(ip) & mask == u32::from(base);
    for net in conn.list_all_networks(0).unwrap_or_default() {
        let xml = net.xml_desc(0).unwrap_or_default();
        for part in xml.split("<ip ").skip(1) {
            let Some(addr) = part
                .split("address='")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            // Theirs is assumed to be at least a /24.
            let theirs = u32::from(addr) & (u32::MAX << 8);
            if inside(addr) || (u32::from(base) & (u32::MAX << 8)) == theirs {
                return Some(format!(
                    "libvirt network {} uses {addr}",
                    net.name().unwrap_or_default()
                ));
            }
        }
    }
    if std::net::UdpSocket::bind((torms_of(base), 0)).is_ok() {
        return Some(format!(
            "the host already has the address {}",
            torms_of(base)
        ));
    }
    None
}

fn memory_available_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub struct DomainParams<'a> {
    pub name: &'a str,
    pub cluster: &'a str,
    pub node: &'a str,
    pub marker: &'a str,
    pub domain_type: &'a str,
    pub memory_kib: u64,
    pub vcpus: u32,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
    pub network: Option<&'a str>,
    pub mac: &'a str,
    pub console_log: &'a Path,
    pub fam: Option<&'a Path>,
    pub fam_bytes: u64,
    pub filesystems: &'a [DomainFs],
}

/// A virtiofs device of a domain.
#[derive(Debug, Clone, Serialize)]
pub struct DomainFs {
    pub tag: String,
    pub source: String,
    /// The vhost-user socket (commas doubled for QEMU).
    pub socket: String,
    /// PCI slot, `0x11`.
    pub slot: String,
}

pub fn render_domain(p: &DomainParams) -> Result<String> {
    let mut c = tera::Context::new();
    c.insert("name", p.name);
    c.insert("cluster", p.cluster);
    c.insert("node", p.node);
    c.insert("marker", p.marker);
    c.insert("domain_type", p.domain_type);
    c.insert("memory_kib", &p.memory_kib);
    c.insert("vcpus", &p.vcpus);
    c.insert("kernel", &p.kernel);
    c.insert("initrd", &p.initrd);
    c.insert("cmdline", p.cmdline);
    c.insert("network", &p.network);
    c.insert("mac", p.mac);
    c.insert("console_log", &p.console_log);
    c.insert(
        "fam",
        &p.fam
            .map(|f| virtiofs::qemu_escape(&f.display().to_string())),
    );
    c.insert("filesystems", p.filesystems);
    c.insert("fam_bytes", &p.fam_bytes);
    c.insert("emulator", EMULATOR);
    c.insert("tb_cache_mib", &TB_CACHE_MIB);
    tera::Tera::one_off(DOMAIN_TEMPLATE, &c, false)
        .map_err(|e| anyhow!("templates/libvirt/domain.xml: {e:?}"))
}

#[derive(Serialize)]
struct NetNode {
    name: String,
    ip: Ipv4Addr,
    mac: String,
}

pub fn render_network(cfg: &ClusterNet, nodes: &[(String, u32)]) -> Result<String> {
    let mut c = tera::Context::new();
    c.insert("name", &cfg.network);
    c.insert("bridge", &cfg.bridge);
    c.insert("torms", &cfg.torms);
    c.insert("prefix", &cfg.prefix);
    c.insert("range_start", &node_ip(cfg.base, 100));
    c.insert("range_end", &node_ip(cfg.base, 199));
    let list: Vec<NetNode> = nodes
        .iter()
        .map(|(name, id)| NetNode {
            name: name.clone(),
            ip: node_ip(cfg.base, *id),
            mac: mac(*id),
        })
        .collect();
    c.insert("nodes", &list);
    tera::Tera::one_off(NETWORK_TEMPLATE, &c, false)
        .map_err(|e| anyhow!("templates/libvirt/network.xml: {e:?}"))
}

/// Every domain of the cluster in `cluster_dir` (found by the marker in its description).
fn cluster_domains(conn: &Connect, cluster_dir: &Path) -> Vec<Domain> {
    let want = format!(
        "<description>{}</description>",
        xml_escape(&marker(cluster_dir))
    );
    conn.list_all_domains(0)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.xml_desc(0).is_ok_and(|x| x.contains(&want)))
        .collect()
}

fn domain_state(d: &Domain) -> Option<DomainState> {
    d.state()
        .ok()
        .and_then(|(s, _)| Result::<DomainState, _>::from(s).ok())
}

fn settings_memory_kib(s: &Settings) -> u64 {
    s.vm.vdram_kib.unwrap_or(DEFAULT_MEMORY_KIB)
}

fn guest_agent_path(bin_dir: &Path) -> PathBuf {
    bin_dir.join("fame-guest")
}

/// The virtiofsds the node's handle records (started with its VM).
fn virtiofsds(node: &Node) -> Vec<ProcRef> {
    match &node.handle {
        NodeHandle::Vm { virtiofsd, .. } => virtiofsd.clone(),
        _ => vec![],
    }
}

/// Waits until none of `doms` is active, up to `limit`.
fn wait_inactive(doms: &[Domain], limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && doms.iter().any(|d| d.is_active().unwrap_or(false)) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Powers a VM off at once if it runs, and forgets it if libvirt keeps its definition.
fn destroy_domain(d: &Domain) -> Result<()> {
    if d.is_active().unwrap_or(false) {
        d.destroy().map_err(|e| {
            anyhow!(
                "cannot destroy VM {}: {}; run `fame down` again",
                d.name().unwrap_or_default(),
                e.message()
            )
        })?;
    }
    if d.is_persistent().unwrap_or(false) {
        let _ = d.undefine();
    }
    Ok(())
}

impl Backend for LibvirtBackend {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn binary_in_node(&self, host_path: &Path) -> String {
        // The guest image puts lfs-node and fame-guest in /bin.
        host_path.file_name().map_or_else(
            || host_path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    fn check(&self) -> Result<()> {
        let s = &self.cx.settings;
        let bridge = bridge_name(&s.name);
        if bridge.len() > 15 {
            bail!(
                "--name {}: the libvirt backend names the cluster's bridge {bridge}, longer than Linux's 15 characters; pick a --name of at most 12 characters",
                s.name
            );
        }
        let accel = s.vm.accel.as_deref().unwrap_or("auto");
        accel::check_flag(accel)?;
        let vcpus = s.vm.vcpus.unwrap_or(DEFAULT_VCPUS);
        if !(1..=MAX_VCPUS).contains(&vcpus) {
            bail!("--vcpus {vcpus}: a VM node has 1 to {MAX_VCPUS} vCPUs; try --vcpus 1");
        }
        let mem = settings_memory_kib(s);
        if mem < MIN_MEMORY_KIB {
            bail!(
                "--memory {}M: a VM node needs at least {} MiB (kernel, initramfs, lfs-node); try --memory 256M",
                mem / 1024,
                MIN_MEMORY_KIB / 1024
            );
        }
        if let Some(sub) = &s.subnet {
            parse_subnet(sub)?;
        }
        let root = GuestRoot::parse(s.vm.guest_root.as_deref())?;
        let kernel = image::find_kernel()?;
        for m in root.modules() {
            image::find_module(&kernel, m).map_err(|e| {
                if image::HOST_ROOT_MODULES.contains(&m) {
                    anyhow!("{e}, or use --guest-root initramfs")
                } else {
                    e
                }
            })?;
        }
        let bins = crate::bins::Bins::locate(s.bin_dir.as_deref())?;
        let agent = guest_agent_path(&bins.dir);
        if !agent.is_file() {
            bail!(
                "{} is missing: VM nodes run it as their exec agent; build it with `cargo build --workspace --bins` (or point --bin-dir at it)",
                agent.display()
            );
        }
        if s.share.len() > virtiofs::MAX_SHARES {
            bail!(
                "--share given {} times: a VM node has PCI slots for {} shared folders; share a common parent folder instead",
                s.share.len(),
                virtiofs::MAX_SHARES
            );
        }
        for d in &s.share {
            virtiofs::check_share_path(d)?;
        }
        if root == GuestRoot::Host && !virtiofs::fits_cmdline(&bins.dir) {
            bail!(
                "{}: VM nodes on the host's root run fame's binaries from there and learn the folder from the kernel command line, which cannot carry spaces, quotes or other special characters; build in (or point --bin-dir at) a folder without them, or use --guest-root initramfs",
                bins.dir.display()
            );
        }
        if root == GuestRoot::Host {
            virtiofs::check_visible(&bins.dir, &s.share)?;
            virtiofs::check_host(&s.dir, root, "VM nodes run on the host's root file system")?;
        } else if !s.share.is_empty() {
            virtiofs::check_host(&s.dir, root, "--share folders reach VM nodes")?;
        }
        if !Path::new(EMULATOR).is_file() {
            bail!("{EMULATOR} is missing: the libvirt backend runs QEMU; install it with `apt-get install qemu-system-x86`");
        }
        if accel == "kvm" {
            if let Err(why) = accel::kvm_device() {
                bail!("--accel kvm: {why}; load kvm (modprobe kvm_intel or kvm_amd), or use --accel tcg or --accel auto");
            }
        }
        if let Some(avail) = memory_available_kib() {
            let need = u64::from(s.nodes) * (mem + OVERHEAD_KIB);
            if need > avail {
                bail!(
                    "--nodes {} with --memory {}M: the VMs need about {} MiB of host memory (their RAM plus about {} MiB of QEMU each) but only {} MiB is available; use fewer --nodes or a smaller --memory",
                    s.nodes,
                    mem / 1024,
                    need / 1024,
                    OVERHEAD_KIB / 1024,
                    avail / 1024
                );
            }
        }
        let conn = connect()?;
        let net = network_name(&s.name);
        if conn.lookup_network_by_name(&net).is_ok() {
            bail!(
                "--name {}: libvirt already has a network {net} (a cluster of that name under another FAME_HOME?); remove it with `virsh net-destroy {net}` or pick another --name",
                s.name
            );
        }
        for id in 1..=s.nodes {
            let d = domain_name(&s.name, &format!("{}{id:02}", s.hostbase));
            if conn.lookup_domain_by_name(&d).is_ok() {
                bail!(
                    "--name {}: libvirt already has a domain {d} (a cluster of that name under another FAME_HOME?); remove it with `virsh destroy {d}` or pick another --name",
                    s.name
                );
            }
        }
        if let Some(sub) = &s.subnet {
            let (base, prefix) = parse_subnet(sub)?;
            if let Some(what) = subnet_taken(&conn, base, prefix) {
                bail!("--subnet {sub}: {what}; pick another --subnet, or leave it out to get a free one");
            }
        }
        Ok(())
    }

    fn prepare(&self, state: &ClusterState, step: &Step) -> Result<IpAddr> {
        let s = &state.settings;
        let dir = &s.dir;
        let conn = connect()?;
        let mut timings = vec![];
        let t = Instant::now();
        step.set_message("subnet");
        let (base, prefix) = match &s.subnet {
            Some(sub) => parse_subnet(sub)?,
            None => (42..=254u8)
                .map(|c| (Ipv4Addr::new(192, 168, c, 0), 24))
                .find(|(b, p)| subnet_taken(&conn, *b, *p).is_none())
                .ok_or_else(|| {
                    anyhow!(
                        "no free 192.168.X.0/24 for the cluster network; give one with --subnet"
                    )
                })?,
        };
        step.set_message("guest image");
        let kernel = image::find_kernel()?;
        let root = GuestRoot::parse(s.vm.guest_root.as_deref())?;
        let img = image::ensure(
            &kernel,
            root,
            &state.bin_dir.join(crate::bins::LFS_NODE),
            &guest_agent_path(&state.bin_dir),
        )?;
        let what = if img.built { "built" } else { "cached" };
        timings.push((format!("guest image ({what})"), img.seconds));
        let t2 = Instant::now();
        step.set_message("accelerator");
        let (acc, how) = accel::resolve(
            &conn,
            s.vm.accel.as_deref().unwrap_or("auto"),
            &img,
            &dir.join("nodes"),
        )?;
        timings.push(("accelerator".into(), t2.elapsed().as_secs_f64()));
        let mut cfg = ClusterNet {
            cluster: s.name.clone(),
            network: network_name(&s.name),
            bridge: bridge_name(&s.name),
            subnet: format!("{base}/{prefix}"),
            base,
            prefix,
            torms: torms_of(base),
            accel: acc.name().into(),
            domain_type: acc.domain_type().into(),
            vcpus: s.vm.vcpus.unwrap_or(DEFAULT_VCPUS),
            memory_kib: settings_memory_kib(s),
            kernel: img.kernel.clone(),
            initrd: img.initrd.clone(),
            image_key: img.key.clone(),
            fam: state.fam_path.clone(),
            fam_bytes: s.fam_bytes,
            librarian_port: state.port,
            guest_root: root,
            timings: vec![],
        };
        // Saved before the network exists, so that a rollback or `fame down` finds it.
        self.save_config(&cfg)?;
        let t3 = Instant::now();
        step.set_message("network");
        let nodes: Vec<(String, u32)> =
            state.nodes.iter().map(|n| (n.name.clone(), n.id)).collect();
        let xml = render_network(&cfg, &nodes)?;
        conn.create_network_xml(&xml).map_err(|e| {
            anyhow!(
                "cannot start the cluster network {} (bridge {}, {}): {}; see `virsh net-list --all`, or pick another --subnet",
                cfg.network,
                cfg.bridge,
                cfg.subnet,
                e.message()
            )
        })?;
        timings.push(("network".into(), t3.elapsed().as_secs_f64()));
        let summary = format!(
            "libvirt: network {} on {} (torms {}), guest root {}, guest image {} {what} in {:.1} s, accelerator {how}",
            cfg.network, cfg.bridge, cfg.torms, root.name(), cfg.image_key, img.seconds
        );
        step.println(&summary);
        tracing::info!(
            "{summary}; prepare took {:.2} s: {timings:?}",
            t.elapsed().as_secs_f64()
        );
        cfg.timings = timings;
        self.save_config(&cfg)?;
        Ok(IpAddr::V4(cfg.torms))
    }

    fn librarian_addr(&self) -> IpAddr {
        self.config()
            .map(|c| IpAddr::V4(c.torms))
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn start(&self, node: &Node, daemon: &DaemonSpec) -> Result<NodeHandle> {
        let dir = self.cx.dir();
        let cfg = self.config()?;
        let conn = connect()?;
        if conn.lookup_network_by_name(&cfg.network).is_err() {
            bail!(
                "the cluster network {} is gone (libvirtd restarted?); `fame rebuild {}` recreates the cluster",
                cfg.network,
                cfg.cluster
            );
        }
        let name = domain_name(&cfg.cluster, &node.name);
        let ip = node_ip(cfg.base, node.id);
        let exports = virtiofs::exports(cfg.guest_root, &daemon.shared);
        let bin_dir = daemon.lfs_node.parent().unwrap_or(Path::new("/"));
        // no_timer_check: a TCG guest on a loaded host (32 of them on 2 cores) can fail the
        // kernel's early check of the IO-APIC timer and panic at boot; virtme-ng skips it too.
        let cmdline = format!(
            "console=ttyS0 quiet panic=-1 no_timer_check fame.node={} fame.name={} fame.ip={ip}/{} fame.torms={} fame.port={} fame.mmap={} fame.lfs-args={}{}{}",
            node.id,
            node.name,
            cfg.prefix,
            cfg.torms,
            daemon.librarian_port,
            daemon.mmap.name(),
            // The daemon finds its node id (FAME MAC) and FAM (the ivshmem BAR) by itself and
            // logs to the console; the words go comma-joined (the command line splits on spaces).
            daemon
                .args(&DaemonView {
                    librarian_host: "torms".into(),
                    node_id: None,
                    fam: None,
                    log_file: None,
                })
                .join(","),
            match cfg.guest_root {
                GuestRoot::Host => format!(" fame.bin={}", bin_dir.display()),
                GuestRoot::Initramfs => String::new(),
            },
            virtiofs::cmdline(&exports)
        );
        let console = console_log(node);
        let _ = std::fs::remove_file(&console);
        let filesystems: Vec<DomainFs> = exports
            .iter()
            .map(|e| DomainFs {
                tag: e.tag.clone(),
                source: e.source.display().to_string(),
                socket: virtiofs::qemu_escape(
                    &virtiofs::socket_path(&node.dir, e).display().to_string(),
                ),
                slot: format!("{:#04x}", e.slot),
            })
            .collect();
        let xml = render_domain(&DomainParams {
            name: &name,
            cluster: &cfg.cluster,
            node: &node.name,
            marker: &marker(dir),
            domain_type: &cfg.domain_type,
            memory_kib: cfg.memory_kib,
            vcpus: cfg.vcpus,
            kernel: &cfg.kernel,
            initrd: &cfg.initrd,
            cmdline: &cmdline,
            network: Some(&cfg.network),
            mac: &mac(node.id),
            console_log: &console,
            fam: Some(&daemon.fam),
            fam_bytes: cfg.fam_bytes,
            filesystems: &filesystems,
        })?;
        std::fs::write(node.dir.join("domain.xml"), &xml)?;
        // The virtiofsds first: QEMU connects to their sockets as it starts.
        let mut daemons: Vec<ProcRef> = vec![];
        let started = exports.iter().try_for_each(|e| {
            daemons.push(virtiofs::start(&node.dir, dir, e)?);
            Ok::<_, anyhow::Error>(())
        });
        let created = started.and_then(|()| {
            conn.create_domain_xml(&xml, 0).map(|_| ()).map_err(|e| {
                anyhow!(
                    "{}: libvirt could not start its VM {name}: {}{}",
                    node.name,
                    e.message(),
                    crate::services::log_tail(&qemu_log(&name), 5)
                )
            })
        });
        if let Err(e) = created {
            crate::procs::terminate(&daemons, Duration::from_secs(2));
            return Err(e);
        }
        Ok(NodeHandle::Vm {
            domain: name,
            ip: ip.to_string(),
            virtiofsd: daemons,
        })
    }

    fn probe(&self, node: &Node) -> Probe {
        // At most one look every 200 ms per node: probes are polled in a tight loop.
        let wait = {
            let mut last = self.last_probe.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let prev = last.insert(node.name.clone(), now);
            prev.map(|p| Duration::from_millis(200).saturating_sub(now - p))
        };
        if let Some(w) = wait {
            std::thread::sleep(w);
        }
        let absent = Probe {
            running: false,
            lfs: LfsState::Absent,
        };
        let Ok(cfg) = self.config() else {
            return absent;
        };
        let Ok(conn) = connect() else { return absent };
        let Ok(dom) = conn.lookup_domain_by_name(&domain_name(&cfg.cluster, &node.name)) else {
            return absent;
        };
        match domain_state(&dom) {
            Some(DomainState::Running | DomainState::Blocked) => {}
            Some(DomainState::Paused) => {
                return Probe {
                    running: true,
                    lfs: LfsState::NotMounted,
                }
            }
            _ => return absent,
        }
        let lfs = match agent::lfs_mounted(node_ip(cfg.base, node.id)) {
            Some(true) => LfsState::Mounted,
            _ => LfsState::NotMounted,
        };
        Probe { running: true, lfs }
    }

    fn exec(&self, node: &Node, argv: &[OsString]) -> Result<i32> {
        let cfg = self.config()?;
        let conn = connect()?;
        let name = domain_name(&cfg.cluster, &node.name);
        let state = conn
            .lookup_domain_by_name(&name)
            .ok()
            .and_then(|d| domain_state(&d));
        match state {
            Some(DomainState::Running | DomainState::Blocked) => {}
            Some(DomainState::Paused) => bail!(
                "{} is paused; resume it first (`virsh -c {} resume {name}`)",
                node.name,
                uri()
            ),
            _ => bail!(
                "{} is not running (no VM {name}); `fame status` shows the cluster, `fame reload` restarts its nodes",
                node.name
            ),
        }
        agent::exec(&node.name, node_ip(cfg.base, node.id), argv)
    }

    fn stop(&self, nodes: &[&Node], grace: Duration) -> Result<usize> {
        if nodes.is_empty() {
            return Ok(0);
        }
        let conn = connect()?;
        let cfg = self.config().ok();
        let doms = cluster_domains(&conn, self.cx.dir());
        let running = doms
            .iter()
            .filter(|d| d.is_active().unwrap_or(false))
            .count();
        // Running nodes are asked to unmount and power off; paused or silent ones are destroyed.
        std::thread::scope(|scope| {
            for d in &doms {
                let running = matches!(
                    domain_state(d),
                    Some(DomainState::Running | DomainState::Blocked)
                );
                let (Some(cfg), true) = (&cfg, running) else {
                    continue;
                };
                let name = d.name().unwrap_or_default();
                let Some(node) = nodes
                    .iter()
                    .find(|n| domain_name(&cfg.cluster, &n.name) == name)
                else {
                    continue;
                };
                let ip = node_ip(cfg.base, node.id);
                scope.spawn(move || agent::shutdown(ip));
            }
        });
        wait_inactive(&doms, grace);
        for d in &doms {
            destroy_domain(d)?;
        }
        // A virtiofsd ends with its VM; any that has not is stopped here.
        let daemons: Vec<ProcRef> = nodes.iter().flat_map(|n| virtiofsds(n)).collect();
        crate::procs::terminate(&daemons, Duration::from_secs(2));
        Ok(running)
    }

    fn destroy(&self, nodes: &[&Node]) -> Result<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        let dir = self.cx.dir();
        let cfg = self.config().ok();
        let conn = connect()?;
        // Anything `stop` did not see (e.g. started after it looked).
        for d in cluster_domains(&conn, dir) {
            destroy_domain(&d)?;
        }
        let cluster = cfg
            .as_ref()
            .map_or_else(|| self.cx.name().to_string(), |c| c.cluster.clone());
        if !cluster.is_empty() {
            let net_name = cfg
                .as_ref()
                .map(|c| c.network.clone())
                .unwrap_or_else(|| network_name(&cluster));
            if let Ok(net) = conn.lookup_network_by_name(&net_name) {
                if net.is_active().unwrap_or(false) {
                    net.destroy().map_err(|e| {
                        anyhow!(
                            "cannot remove the network {net_name}: {}; run `fame down` again",
                            e.message()
                        )
                    })?;
                }
                if net.is_persistent().unwrap_or(false) {
                    let _ = net.undefine();
                }
            }
            for n in nodes {
                remove_qemu_log(&domain_name(&cluster, &n.name));
            }
            let bridge = cfg
                .as_ref()
                .map(|c| c.bridge.clone())
                .unwrap_or_else(|| bridge_name(&cluster));
            for f in [
                format!("{bridge}.status"),
                format!("{net_name}.conf"),
                format!("{net_name}.hostsfile"),
                format!("{net_name}.addnhosts"),
            ] {
                let _ = std::fs::remove_file(Path::new("/var/lib/libvirt/dnsmasq").join(f));
            }
        }
        super::remove_node_dirs(nodes)?;
        let _ = std::fs::remove_file(config_path(dir));
        *self.net.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    fn logs(&self, node: &Node) -> Vec<PathBuf> {
        let mut logs = vec![console_log(node)];
        let mut fsd: Vec<PathBuf> = std::fs::read_dir(&node.dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("virtiofsd-") && n.ends_with(".log"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        fsd.sort();
        logs.extend(fsd);
        logs
    }

    fn host_lfs_path(&self, _node: &Node) -> Option<PathBuf> {
        None
    }

    fn kill(&self, node: &Node) -> Result<()> {
        // Destroying a domain is pulling its plug; the domain is transient, so it is gone.
        self.domain_of(node)?
            .destroy()
            .map_err(|e| anyhow!("{}: cannot destroy its VM: {}", node.name, e.message()))?;
        crate::procs::terminate(&virtiofsds(node), Duration::from_secs(2));
        Ok(())
    }

    fn pause(&self, node: &Node) -> Result<()> {
        self.domain_of(node)?
            .suspend()
            .map_err(|e| anyhow!("{}: cannot pause its VM: {}", node.name, e.message()))
    }

    fn resume(&self, node: &Node) -> Result<()> {
        self.domain_of(node)?
            .resume()
            .map_err(|e| anyhow!("{}: cannot resume its VM: {}", node.name, e.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        assert_eq!(
            parse_subnet("192.168.42.0/24").unwrap(),
            (Ipv4Addr::new(192, 168, 42, 0), 24)
        );
        assert_eq!(
            torms_of(Ipv4Addr::new(10, 9, 0, 0)),
            Ipv4Addr::new(10, 9, 0, 254)
        );
        for bad in [
            "192.168.42.1/24",
            "192.168.42.0",
            "10.0.0.0/8",
            "x/24",
            "10.0.0.0/25",
        ] {
            let e = parse_subnet(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--subnet {bad}:")), "{e}");
        }
    }

    #[test]
    fn macs_follow_fame() {
        assert_eq!(mac(1), "48:50:42:01:01:01");
        assert_eq!(mac(12), "48:50:42:12:12:12");
    }

    #[test]
    fn domain_xml_has_the_fame_parts() {
        let xml = render_domain(&DomainParams {
            name: "fame-t-node01",
            cluster: "t",
            node: "node01",
            marker: "fame-cluster-dir=/x&y",
            domain_type: "qemu",
            memory_kib: 262144,
            vcpus: 1,
            kernel: Path::new("/boot/vmlinuz"),
            initrd: Path::new("/c/initrd.img"),
            cmdline: "console=ttyS0 fame.node=1",
            network: Some("fame-t"),
            mac: &mac(1),
            console_log: Path::new("/c/nodes/node01/console.log"),
            fam: Some(Path::new("/c/fam")),
            fam_bytes: 1 << 30,
            filesystems: &[DomainFs {
                tag: "fame-root".into(),
                source: "/".into(),
                socket: "/c/nodes/node01/fame-root.sock".into(),
                slot: "0x11".into(),
            }],
        })
        .unwrap();
        for want in [
            "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'",
            "<acpi/>",
            "ivshmem-plain,memdev=FAM,bus=pci.0,addr=0x10",
            "mem-path=/c/fam,size=1073741824,id=FAM,share=on",
            "<mac address='48:50:42:01:01:01'/>",
            "<source path='/c/nodes/node01/console.log' append='on'/>",
            "<description>fame-cluster-dir=/x&amp;y</description>",
            "<tb-cache unit='MiB'>64</tb-cache>",
            "<source type='memfd'/>",
            "<access mode='shared'/>",
            "socket,id=fs0,path=/c/nodes/node01/fame-root.sock",
            "vhost-user-fs-pci,chardev=fs0,tag=fame-root,bus=pci.0,addr=0x11",
            // One vCPU runs, two may: TCG's locked instructions stay atomic across VMs.
            "<vcpu placement='static' current='1'>2</vcpu>",
        ] {
            assert!(xml.contains(want), "{want} missing in\n{xml}");
        }
    }

    #[test]
    fn network_xml_has_dhcp_and_dns_for_every_node() {
        let cfg = ClusterNet {
            cluster: "t".into(),
            network: "fame-t".into(),
            bridge: "br_t".into(),
            subnet: "192.168.42.0/24".into(),
            base: Ipv4Addr::new(192, 168, 42, 0),
            prefix: 24,
            torms: Ipv4Addr::new(192, 168, 42, 254),
            accel: "tcg".into(),
            domain_type: "qemu".into(),
            vcpus: 1,
            memory_kib: 262144,
            kernel: "/k".into(),
            initrd: "/i".into(),
            image_key: "k".into(),
            fam: "/f".into(),
            fam_bytes: 1 << 30,
            librarian_port: 9093,
            guest_root: GuestRoot::Host,
            timings: vec![],
        };
        let xml = render_network(&cfg, &[("node01".into(), 1), ("node02".into(), 2)]).unwrap();
        for want in [
            "<bridge name='br_t'",
            "<ip address='192.168.42.254' prefix='24'>",
            "<hostname>torms</hostname>",
            "<host mac='48:50:42:02:02:02' name='node02' ip='192.168.42.2'/>",
            "<host ip='192.168.42.1'>",
        ] {
            assert!(xml.contains(want), "{want} missing in\n{xml}");
        }
        assert!(!xml.contains("<forward"));
    }
}
