//! The container backend: each node is a Docker container with a root file system of its own
//! (the node image, see [`image`]), hostname `nodeNN`, its own address and process tree,
//! `/dev/fuse` and CAP_SYS_ADMIN (what a FUSE mount needs, nothing more), and the cluster's FAM
//! file bind-mounted at `/fam`. `lfs-node` mounts `/lfs` inside it.
//!
//! # Where the Librarian runs
//!
//! On the host, bound to the gateway address of the cluster's Docker network, as on the other
//! backends (the host plays the ToRMS): the Librarian, its database, the LMP, `fsck-lfs` and the
//! scenario faults on the Librarian (kill, restart) are then the same code for every backend,
//! and its database stays on the host's disk. The network is `internal` (no route out of it);
//! its gateway is the host's address on its bridge, so the nodes reach the Librarian and
//! nothing else. Inside the nodes `torms` names that address, as in FAME.
//!
//! # What is whose
//!
//! Every container and network fame makes carries the label `org.fame.cluster` = the cluster
//! directory, so `fame down` finds and removes all of them even when `fame` was killed before it
//! could write them down. Containers are named `fame-CLUSTER-NODE`, networks `fame-CLUSTER`;
//! an existing container or network of that name that is not this cluster's stops `fame up`
//! before anything is made.
//!
//! The node's directory (`nodes/nodeNN/`) is bind-mounted at `/var/log/fame`: its console log
//! and lfs-node's log are host files that `fame logs` lists. `nodes/nodeNN/lfs` links to the
//! node's `/lfs` through `/proc/PID/root` of its container, as on the process backend.

pub mod engine;
pub mod image;

use super::{
    console_log, daemon_log, lfs_link, Backend, Capabilities, ClusterCtx, DaemonSpec, DaemonView,
    LfsState, NodeHandle, Probe,
};
use crate::backend::process::{answers_as_fuse, fuse_on_lfs, PROBE_LIMIT};
use crate::procs::ProcRef;
use crate::progress::Step;
use crate::state::{ClusterState, Node};
use anyhow::{anyhow, bail, Context, Result};
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectNetworkOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use engine::{is_not_found, message, Engine};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The label naming a container's or network's cluster directory.
pub const CLUSTER_LABEL: &str = "org.fame.cluster";
/// The label naming a container's node.
pub const NODE_LABEL: &str = "org.fame.node";
/// Where a node sees the FAM file.
const FAM_IN_NODE: &str = "/fam";
/// Where a node's directory is bind-mounted.
const LOG_DIR_IN_NODE: &str = "/var/log/fame";

/// The cluster's network and node image are shared; the engine starts several nodes at a time
/// (runc, mounts, network); a node is cut off by disconnecting it from the cluster network.
pub const CAPABILITIES: Capabilities = Capabilities {
    shared_parts: true,
    sizes_nodes: false,
    start_concurrency: 4,
    cuts_network: true,
};

pub struct ContainerBackend {
    cx: ClusterCtx,
    /// The engine, connected on first use and shared by every call (a `fame up` probes its
    /// nodes hundreds of times while they start).
    engine: std::sync::Mutex<Option<std::sync::Arc<Engine>>>,
}

/// What `prepare` decided, kept in the cluster directory (`container.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterNet {
    pub cluster: String,
    pub network: String,
    pub subnet: String,
    /// The host's address on the network: the Librarian listens there (`torms` in the nodes).
    pub gateway: Ipv4Addr,
    pub image: String,
    pub engine: String,
    #[serde(default)]
    pub timings: Vec<(String, f64)>,
}

fn config_path(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("container.json")
}

pub fn load_config(cluster_dir: &Path) -> Result<ClusterNet> {
    let p = config_path(cluster_dir);
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("cannot read {} (was the cluster prepared?)", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", p.display()))
}

fn save_config(cluster_dir: &Path, c: &ClusterNet) -> Result<()> {
    let p = config_path(cluster_dir);
    std::fs::write(&p, serde_json::to_string_pretty(c)?)
        .with_context(|| format!("cannot write {}", p.display()))
}

pub fn network_name(cluster: &str) -> String {
    format!("fame-{cluster}")
}

pub fn container_name(cluster: &str, node: &str) -> String {
    format!("fame-{cluster}-{node}")
}

/// The FAME MAC of node `id` (`48:50:42:NN:NN:NN`), as lfs-node recognises it. Engines take a
/// MAC per network endpoint from API 1.44 on; older ones (Debian 12's docker.io speaks 1.41)
/// ignore it and pick their own, which is why the daemon is also given `--node-id`.
fn mac(id: u32) -> String {
    crate::backend::libvirt::mac(id)
}

/// A label filter for the Engine API's list calls.
fn label_filter(dir: &Path) -> HashMap<String, Vec<String>> {
    let mut f = HashMap::new();
    f.insert(
        "label".to_string(),
        vec![format!("{CLUSTER_LABEL}={}", dir.display())],
    );
    f
}

/// The cluster's containers (any state), as (name, running).
fn cluster_containers(engine: &Engine, dir: &Path) -> Result<Vec<(String, bool)>> {
    let filters = label_filter(dir);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = engine
        .run(engine.docker.list_containers(Some(options)))
        .map_err(|e| cannot_list(engine, "containers", &e))?;
    Ok(list
        .into_iter()
        .map(|c| {
            let name = c
                .names
                .unwrap_or_default()
                .first()
                .map(|n| n.trim_start_matches('/').to_string())
                .or(c.id)
                .unwrap_or_default();
            let running = c.state.is_some_and(|s| s.to_string() == "running");
            (name, running)
        })
        .collect())
}

/// A failed listing of the engine's `what` (containers, networks).
fn cannot_list(engine: &Engine, what: &str, e: &bollard::errors::Error) -> anyhow::Error {
    anyhow!("cannot list the {what} of {}: {}", engine.host, message(e))
}

/// The cluster's networks, by name.
fn cluster_networks(engine: &Engine, dir: &Path) -> Result<Vec<String>> {
    let filters = label_filter(dir);
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let list = engine
        .run(engine.docker.list_networks(Some(options)))
        .map_err(|e| cannot_list(engine, "networks", &e))?;
    Ok(list.into_iter().filter_map(|n| n.name).collect())
}

/// Removes a container whatever its state; gone already is fine.
fn remove_container(engine: &Engine, name: &str) -> Result<()> {
    remove_containers(engine, &[name.to_string()])
}

/// Removes containers (all at once) whatever their state; gone already is fine.
/// Removes the cluster's containers and networks (those labelled with its directory).
fn remove_cluster(engine: &Engine, dir: &Path) -> Result<()> {
    let names: Vec<String> = cluster_containers(engine, dir)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    remove_containers(engine, &names)?;
    for net in cluster_networks(engine, dir)? {
        match engine.run(engine.docker.remove_network(&net)) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => bail!(
                "cannot remove the network {net}: {}; remove it with `docker network rm {net}` and run `fame down` again",
                message(&e)
            ),
        }
    }
    Ok(())
}

fn remove_containers(engine: &Engine, names: &[String]) -> Result<()> {
    let results = engine.run(futures_util::future::join_all(names.iter().map(|name| {
        let docker = engine.docker.clone();
        async move {
            let options = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            match docker.remove_container(name, Some(options)).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(anyhow!(
                    "cannot remove the container {name}: {}; remove it with `docker rm -f {name}` and run `fame down` again",
                    message(&e)
                )),
            }
        }
    })));
    results.into_iter().collect()
}

/// The labels of a container or network, if it exists.
fn existing_labels(engine: &Engine, name: &str, network: bool) -> Option<HashMap<String, String>> {
    if network {
        engine
            .run(
                engine
                    .docker
                    .inspect_network(name, None::<InspectNetworkOptions>),
            )
            .ok()
            .map(|n| n.labels.unwrap_or_default())
    } else {
        engine
            .run(engine.docker.inspect_container(name, None))
            .ok()
            .map(|c| c.config.and_then(|c| c.labels).unwrap_or_default())
    }
}

/// The running container's main process (docker-init) on the host, if it runs.
fn container_pid(engine: &Engine, name: &str) -> Option<(bool, bool, Option<ProcRef>)> {
    let c = engine
        .run(engine.docker.inspect_container(name, None))
        .ok()?;
    let state = c.state?;
    let running = state.running.unwrap_or(false);
    let paused = state.paused.unwrap_or(false);
    let pid = state
        .pid
        .filter(|&p| p > 0)
        .and_then(|p| ProcRef::of(p as i32));
    Some((running, paused, pid))
}

/// The cluster's settings with the image of the binaries the node is started with: the same as
/// at `prepare` unless they were rebuilt since (`fame reload`), in which case the new image is
/// built once (under a lock, as nodes start in parallel) and recorded.
fn current_image(engine: &Engine, dir: &Path, daemon: &DaemonSpec) -> Result<ClusterNet> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = load_config(dir)?;
    let bin_dir = daemon.lfs_node.parent().unwrap_or(Path::new("/"));
    let img = image::ensure(engine, bin_dir)?;
    if img.tag != cfg.image {
        tracing::info!(
            "node image {} replaces {} (new binaries)",
            img.tag,
            cfg.image
        );
        cfg.image = img.tag;
        save_config(dir, &cfg)?;
    }
    Ok(cfg)
}

/// Whether the host can see `/dev/fuse`, which every node needs.
fn check_fuse_device() -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata("/dev/fuse") {
        Ok(m) if m.file_type().is_char_device() => Ok(()),
        _ => bail!(
            "/dev/fuse is missing on this host: container nodes mount /lfs with FUSE through it; load the module with `modprobe fuse` (Debian: `apt-get install fuse3`), or give the host's /dev/fuse to the environment fame runs in"
        ),
    }
}

/// Whether the loopback interface of fame's network namespace is up. The Librarian listens on a
/// cluster network's gateway, an address of this namespace, which fame (and the LMP) reach
/// through `lo`: with `lo` down (a fresh `unshare -n` namespace) it would never answer.
fn check_loopback() -> Result<()> {
    let probe = std::net::TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, 1).into(),
        Duration::from_secs(1),
    );
    match probe {
        Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => bail!(
            "the loopback interface of the network namespace fame runs in is down, so the Librarian on the cluster network's gateway would be unreachable from here: bring it up with `ip link set lo up`"
        ),
        _ => Ok(()),
    }
}

/// Whether AppArmor confines containers on this host (its default Docker profile forbids the
/// mount a FUSE daemon makes).
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

impl ContainerBackend {
    pub fn new(cx: ClusterCtx) -> ContainerBackend {
        ContainerBackend {
            cx,
            engine: Default::default(),
        }
    }

    /// Pauses (`freeze`) or unpauses the node's container.
    fn freeze(&self, node: &Node, freeze: bool) -> Result<()> {
        let engine = self.engine()?;
        let name = self.name_of(node);
        let docker = &engine.docker;
        let done = if freeze {
            engine.run(docker.pause_container(&name))
        } else {
            engine.run(docker.unpause_container(&name))
        };
        let verb = if freeze { "pause" } else { "resume" };
        done.map_err(|e| {
            anyhow!(
                "{}: cannot {verb} its container {name}: {}",
                node.name,
                message(&e)
            )
        })
    }

    /// The container of a node of the cluster.
    fn name_of(&self, node: &Node) -> String {
        container_name(self.cx.name(), &node.name)
    }

    /// The connected engine; a failed connection is not remembered.
    fn engine(&self) -> Result<std::sync::Arc<Engine>> {
        let mut held = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = held.as_ref() {
            return Ok(e.clone());
        }
        let e = std::sync::Arc::new(Engine::connect()?);
        *held = Some(e.clone());
        Ok(e)
    }

    fn node_config(
        &self,
        node: &Node,
        daemon: &DaemonSpec,
        cfg: &ClusterNet,
        cluster_dir: &Path,
    ) -> ContainerCreateBody {
        let mut args = vec![image::ENTRYPOINT.to_string()];
        args.extend(daemon.args(&DaemonView {
            librarian_host: cfg.gateway.to_string(),
            node_id: Some(node.id),
            fam: Some(FAM_IN_NODE.into()),
            log_file: Some(Path::new(LOG_DIR_IN_NODE).join("lfs-node.log")),
        }));
        let mut labels = HashMap::new();
        labels.insert(CLUSTER_LABEL.to_string(), cluster_dir.display().to_string());
        labels.insert(NODE_LABEL.to_string(), node.name.clone());
        let mut endpoints = HashMap::new();
        endpoints.insert(
            cfg.network.clone(),
            EndpointSettings {
                mac_address: Some(mac(node.id)),
                ..Default::default()
            },
        );
        ContainerCreateBody {
            hostname: Some(node.name.clone()),
            image: Some(cfg.image.clone()),
            cmd: Some(args),
            // The image preloads liblfs_preload.so everywhere; `--mmap page-cache` turns it off
            // in the container's environment, which `docker exec` passes on.
            env: Some(
                [format!(
                    "{}={}",
                    crate::backend::process::NODE_ENV,
                    node.name
                )]
                .into_iter()
                .chain(
                    (daemon.mmap == crate::state::MmapMode::PageCache)
                        .then(|| "LFS_MMAP=page-cache".to_string()),
                )
                .collect(),
            ),
            labels: Some(labels),
            // docker stop sends SIGTERM to docker-init, which passes it to lfs-node.
            stop_timeout: Some(10),
            host_config: Some(HostConfig {
                init: Some(true),
                network_mode: Some(cfg.network.clone()),
                binds: Some(
                    [
                        format!("{}:{FAM_IN_NODE}", daemon.fam.display()),
                        format!("{}:{LOG_DIR_IN_NODE}", node.dir.display()),
                    ]
                    .into_iter()
                    .chain(
                        daemon
                            .shared
                            .iter()
                            .map(|d| format!("{0}:{0}", d.display())),
                    )
                    .collect(),
                ),
                devices: Some(vec![DeviceMapping {
                    path_on_host: Some("/dev/fuse".into()),
                    path_in_container: Some("/dev/fuse".into()),
                    cgroup_permissions: Some("rwm".into()),
                }]),
                cap_add: Some(vec!["SYS_ADMIN".into()]),
                security_opt: apparmor_enabled().then(|| vec!["apparmor=unconfined".into()]),
                extra_hosts: Some(vec![format!("torms:{}", cfg.gateway)]),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(endpoints),
            }),
            ..Default::default()
        }
    }
}

impl Backend for ContainerBackend {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    /// The binaries are on the image's `PATH`.
    fn binary_in_node(&self, host_path: &Path) -> String {
        host_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn check(&self) -> Result<()> {
        let s = &self.cx.settings;
        check_fuse_device()?;
        check_loopback()?;
        let engine = self.engine()?;
        let net = network_name(&s.name);
        let ours = |labels: &HashMap<String, String>| {
            labels.get(CLUSTER_LABEL).map(PathBuf::from).as_deref() == Some(s.dir.as_path())
        };
        if let Some(labels) = existing_labels(&engine, &net, true) {
            if !ours(&labels) {
                bail!(
                    "a Docker network named {net} already exists and is not this cluster's: remove it (`docker network rm {net}`) or pick another --name"
                );
            }
        }
        for i in 1..=s.nodes {
            let node = format!("{}{i:02}", s.hostbase);
            let name = container_name(&s.name, &node);
            if let Some(labels) = existing_labels(&engine, &name, false) {
                if !ours(&labels) {
                    bail!(
                        "a Docker container named {name} already exists and is not this cluster's: remove it (`docker rm -f {name}`) or pick another --name"
                    );
                }
            }
        }
        Ok(())
    }

    fn prepare(&self, state: &ClusterState, step: &Step) -> Result<IpAddr> {
        let s = &state.settings;
        let dir = &s.dir;
        let t = Instant::now();
        step.set_message("engine");
        let engine = self.engine()?;
        // Leftovers of an earlier run of this very cluster (fame killed during `up`).
        remove_cluster(&engine, dir)?;
        let mut timings = vec![];
        step.set_message("node image");
        let img = image::ensure(&engine, &state.bin_dir)?;
        let what = if img.built { "built" } else { "cached" };
        timings.push((format!("node image ({what})"), img.seconds));
        step.set_message("network");
        let t2 = Instant::now();
        let name = network_name(&s.name);
        let mut labels = HashMap::new();
        labels.insert(CLUSTER_LABEL.to_string(), dir.display().to_string());
        let ipam = s.subnet.as_ref().map(|sub| Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(sub.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            internal: Some(true),
            labels: Some(labels),
            ipam,
            ..Default::default()
        };
        engine
            .run(engine.docker.create_network(request))
            .map_err(|e| {
                anyhow!(
                    "cannot create the cluster network {name}: {}; see `docker network ls`, or pick another --subnet",
                    message(&e)
                )
            })?;
        let net = engine
            .run(
                engine
                    .docker
                    .inspect_network(&name, None::<InspectNetworkOptions>),
            )
            .map_err(|e| anyhow!("cannot inspect the network {name}: {}", message(&e)))?;
        let ipam_cfg = net
            .ipam
            .and_then(|i| i.config)
            .and_then(|c| {
                c.into_iter()
                    .find(|c| c.subnet.as_deref().is_some_and(|s| s.contains('.')))
            })
            .ok_or_else(|| anyhow!("the network {name} has no IPv4 subnet"))?;
        let subnet = ipam_cfg.subnet.clone().unwrap_or_default();
        let gateway: Ipv4Addr = ipam_cfg
            .gateway
            .as_deref()
            .and_then(|g| g.split('/').next())
            .and_then(|g| g.parse().ok())
            .ok_or_else(|| anyhow!("the network {name} ({subnet}) has no IPv4 gateway"))?;
        timings.push(("network".into(), t2.elapsed().as_secs_f64()));
        let cfg = ClusterNet {
            cluster: s.name.clone(),
            network: name.clone(),
            subnet: subnet.clone(),
            gateway,
            image: img.tag.clone(),
            engine: engine.host.clone(),
            timings,
        };
        save_config(dir, &cfg)?;
        let summary = format!(
            "container: network {name} ({subnet}, torms {gateway}), image {} {what} in {:.1} s, engine {}",
            img.tag, img.seconds, engine.host
        );
        step.println(&summary);
        tracing::info!("{summary}; prepare took {:.2} s", t.elapsed().as_secs_f64());
        Ok(IpAddr::V4(gateway))
    }

    fn librarian_addr(&self) -> IpAddr {
        load_config(self.cx.dir())
            .map(|c| IpAddr::V4(c.gateway))
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn start(&self, node: &Node, daemon: &DaemonSpec) -> Result<NodeHandle> {
        let dir = &daemon.cluster_dir;
        let engine = self.engine()?;
        let cfg = current_image(&engine, dir, daemon)?;
        let name = container_name(&cfg.cluster, &node.name);
        // A container left by an earlier start (killed, or stopped): start afresh.
        remove_container(&engine, &name)?;
        let body = self.node_config(node, daemon, &cfg, dir);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = engine
            .run(engine.docker.create_container(Some(options), body))
            .map_err(|e| {
                anyhow!(
                    "{}: cannot create its container {name}: {}",
                    node.name,
                    message(&e)
                )
            })?;
        engine
            .run(engine.docker.start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            ))
            .map_err(|e| {
                anyhow!(
                    "{}: cannot start its container {name}: {}{}",
                    node.name,
                    message(&e),
                    crate::services::log_tail(&console_log(node), 5)
                )
            })?;
        let pid = container_pid(&engine, &name).and_then(|(_, _, p)| p);
        let link = lfs_link(node);
        let _ = std::fs::remove_file(&link);
        if let Some(p) = pid {
            std::os::unix::fs::symlink(p.proc_path("root/lfs"), &link)
                .with_context(|| format!("cannot create {}", link.display()))?;
        }
        Ok(NodeHandle::Container {
            container: name,
            id: created.id,
            pid: pid.map(|p| p.pid),
        })
    }

    fn probe(&self, node: &Node) -> Probe {
        let absent = Probe {
            running: false,
            lfs: LfsState::Absent,
        };
        let Ok(engine) = self.engine() else {
            return absent;
        };
        let Some((running, paused, pid)) = container_pid(&engine, &self.name_of(node)) else {
            return absent;
        };
        if !running {
            return absent;
        }
        let lfs = match pid {
            None => LfsState::NotMounted,
            Some(_) if paused => LfsState::NotAnswering,
            Some(p) if !fuse_on_lfs(p) => LfsState::NotMounted,
            Some(p) => match answers_as_fuse(&p.proc_path("root/lfs"), PROBE_LIMIT) {
                None => LfsState::NotAnswering,
                Some(true) => LfsState::Mounted,
                Some(false) => LfsState::NotMounted,
            },
        };
        Probe { running, lfs }
    }

    fn exec(&self, node: &Node, argv: &[OsString]) -> Result<i32> {
        let engine = self.engine()?;
        let name = self.name_of(node);
        match container_pid(&engine, &name) {
            Some((true, _, _)) => {}
            _ => bail!(
                "{} is not running; `fame status` shows the cluster, `fame reload` restarts its nodes",
                node.name
            ),
        }
        exec::run(&engine, &name, &node.name, argv)
    }

    fn stop(&self, nodes: &[&Node], grace: Duration) -> Result<usize> {
        if nodes.is_empty() {
            return Ok(0);
        }
        let dir = self.cx.dir();
        let engine = self.engine()?;
        let running: Vec<String> = cluster_containers(&engine, dir)?
            .into_iter()
            .filter(|(_, r)| *r)
            .map(|(n, _)| n)
            .collect();
        let secs = grace.as_secs().max(1) as i32;
        let results = engine.run(futures_util::future::join_all(running.iter().map(|n| {
            let docker = engine.docker.clone();
            let n = n.clone();
            async move {
                // A frozen node cannot take SIGTERM: thaw it first.
                let _ = docker.unpause_container(&n).await;
                let options = StopContainerOptionsBuilder::new().t(secs).build();
                match docker.stop_container(&n, Some(options)).await {
                    Ok(()) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => Err(anyhow!("cannot stop the container {n}: {}", message(&e))),
                }
            }
        })));
        for r in results {
            r?;
        }
        Ok(running.len())
    }

    fn destroy(&self, nodes: &[&Node]) -> Result<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        let dir = self.cx.dir();
        let engine = self.engine()?;
        remove_cluster(&engine, dir)?;
        super::remove_node_dirs(nodes)?;
        let _ = std::fs::remove_file(config_path(dir));
        Ok(())
    }

    fn logs(&self, node: &Node) -> Vec<PathBuf> {
        vec![console_log(node), daemon_log(node)]
    }

    fn host_lfs_path(&self, node: &Node) -> Option<PathBuf> {
        Some(lfs_link(node))
    }

    /// SIGKILL of the container's init: every process of the node dies at once and the FUSE mount
    /// goes with its mount namespace.
    fn kill(&self, node: &Node) -> Result<()> {
        let engine = self.engine()?;
        let name = self.name_of(node);
        let _ = engine.run(engine.docker.unpause_container(&name));
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        engine
            .run(engine.docker.kill_container(&name, Some(options)))
            .map_err(|e| {
                anyhow!(
                    "{}: cannot kill its container {name}: {}",
                    node.name,
                    message(&e)
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while container_pid(&engine, &name).is_some_and(|(running, _, _)| running) {
            if Instant::now() > deadline {
                bail!(
                    "{}: its container {name} still runs after SIGKILL",
                    node.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// `docker pause`: the node's processes are frozen (cgroup freezer).
    fn pause(&self, node: &Node) -> Result<()> {
        self.freeze(node, true)
    }

    fn resume(&self, node: &Node) -> Result<()> {
        self.freeze(node, false)
    }

    /// A partition: the node's container leaves the cluster network (its connections to the
    /// Librarian go dead), and joins it again with its MAC to heal.
    fn cut(&self, node: &Node, cut: bool) -> Result<()> {
        let cfg = load_config(self.cx.dir())?;
        let engine = self.engine()?;
        let name = container_name(&cfg.cluster, &node.name);
        let r = if cut {
            engine.run(engine.docker.disconnect_network(
                &cfg.network,
                NetworkDisconnectRequest {
                    container: name.clone(),
                    force: Some(true),
                },
            ))
        } else {
            engine.run(engine.docker.connect_network(
                &cfg.network,
                NetworkConnectRequest {
                    container: name.clone(),
                    endpoint_config: Some(EndpointSettings {
                        mac_address: Some(mac(node.id)),
                        ..Default::default()
                    }),
                },
            ))
        };
        r.map_err(|e| {
            let what = if cut { "disconnect" } else { "connect" };
            anyhow!(
                "{}: cannot {what} its container {name} and the network {}: {}",
                node.name,
                cfg.network,
                message(&e)
            )
        })?;
        Ok(())
    }
}

mod exec;
