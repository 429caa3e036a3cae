//! Renderings of a topology: the TMCF JSON of `-j`, the `-v` listings, and the compact FAME INI.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{format_size, Mode, Node, SourceFormat, Topology};

/// The compact FAME INI (`node_fame.ini`) for `node_count` nodes of `books_per_node` books of
/// `book_size_bytes` each, as the FAME script writes it:
///
/// ```text
/// [global]
/// node_count = 4
/// book_size_bytes = 8M
/// nvm_size_per_node = 1024B
/// ```
///
/// The values are not validated here; [`Topology::from_ini_str`] does that.
pub fn fame_ini(node_count: u32, book_size_bytes: u64, books_per_node: u64) -> String {
    format!(
        "[global]\nnode_count = {node_count}\nbook_size_bytes = {}\nnvm_size_per_node = {books_per_node}B\n",
        format_size(book_size_bytes)
    )
}

/// A JSON value that keeps key order, printed like Python's `json.dumps(indent=4)`.
enum J {
    Int(i64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

fn s(v: impl Into<String>) -> J {
    J::Str(v.into())
}

/// A management processor (a node's or an IZone board's) at address `ip`: its coordinate, its
/// collector and its Redfish API, as the original's generated TMCF lists them.
fn management_processor(coordinate: &str, collector: &str, ip: String) -> J {
    let api = format!("http://{ip}:8081/redfish/v1");
    J::Obj(vec![
        ("coordinate", s(coordinate)),
        ("msCollector", s(collector)),
        ("ipv4Address", s(ip)),
        ("mfwApiUri", s(api)),
    ])
}

fn write_json(j: &J, level: usize, out: &mut String) {
    let pad = |n: usize| "    ".repeat(n);
    match j {
        J::Int(i) => out.push_str(&i.to_string()),
        J::Str(v) => write_str(v, out),
        J::Arr(items) if items.is_empty() => out.push_str("[]"),
        J::Obj(items) if items.is_empty() => out.push_str("{}"),
        J::Arr(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad(level + 1));
                write_json(item, level + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(level));
            out.push(']');
        }
        J::Obj(items) => {
            out.push_str("{\n");
            for (i, (k, v)) in items.iter().enumerate() {
                out.push_str(&pad(level + 1));
                write_str(k, out);
                out.push_str(": ");
                write_json(v, level + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(level));
            out.push('}');
        }
    }
}

/// A JSON string with Python's `ensure_ascii` escaping.
fn write_str(v: &str, out: &mut String) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `time.ctime()`-style UTC timestamp, e.g. `Tue Nov 25 08:25:00 2025`.
fn ctime_utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        WD[days.rem_euclid(7) as usize],
        MON[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The `-j` document for an INI topology (see `INI_to_JSON` in the original).
pub(crate) fn tmcf_json(topo: &Topology) -> Option<String> {
    if topo.format != SourceFormat::Ini {
        return None;
    }
    let extras = topo.ini.clone().unwrap_or_default();
    let datacenter = extras.datacenter.clone().unwrap_or_else(host_name);
    let rack = extras.rack.clone().unwrap_or_else(|| "FAME".to_string());
    let domain = extras
        .domain
        .clone()
        .unwrap_or_else(|| "have.it.your.way".to_string());
    let torms = format!("torms.{domain}");
    let dc_coord = format!("/MachineVersion/1/Datacenter/{datacenter}");
    let rack_coord = format!("Rack/{rack}");
    let phys = topo.mode == Mode::PhysAddr;
    let u_of = |enc: u32| {
        extras
            .enc_u
            .get(&enc)
            .cloned()
            .unwrap_or_else(|| "UV".to_string())
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let service = |name: &str, port: Option<i64>, uri: String, book: bool| {
        let mut o: Vec<(&'static str, J)> = vec![("service", s(name))];
        if book {
            o.push(("bookSize", J::Int(topo.book_size as i64)));
        }
        if let Some(p) = port {
            o.push(("port", J::Int(p)));
        }
        o.push(("tlsPublicCertificate", s("nada")));
        o.push(("restUri", J::Str(uri)));
        J::Obj(o)
    };
    let services = J::Arr(vec![
        service(
            "librarian",
            Some(9093),
            format!("http://{torms}:31179/lmp"),
            true,
        ),
        service(
            "osManifesting",
            Some(31178),
            format!("http://{torms}:31178/manifesting/api"),
            false,
        ),
        service(
            "assemblyAgent",
            None,
            format!("http://{torms}:9097/dma"),
            false,
        ),
        service(
            "monitoring",
            None,
            format!("http://{torms}:5050/rest"),
            false,
        ),
    ]);

    // Enclosures in increasing order, nodes by node id within them.
    let mut nodes: Vec<&Node> = topo.nodes.iter().collect();
    nodes.sort_by_key(|n| n.node_id);
    let mut enclosures: Vec<J> = Vec::new();
    let mut i = 0;
    while i < nodes.len() {
        let enc = nodes[i].enc;
        let mut members = Vec::new();
        while i < nodes.len() && nodes[i].enc == enc {
            let n = nodes[i];
            let mut node: Vec<(&'static str, J)> = vec![
                ("coordinate", s(format!("Node/{}", n.node))),
                ("serialNumber", s("nada")),
            ];
            if !phys {
                let ip = format!("10.254.{enc}.{}", 200 + n.node);
                let mp = management_processor("SocBoard/1/MpDaughterCard/1/NodeMp/1", "nodemp", ip);
                node.push(("nodeMp", mp));
            }
            node.push((
                "soc",
                J::Obj(vec![
                    ("coordinate", s("SocBoard/1/Soc/1")),
                    ("hostname", s(n.hostname.clone())),
                    ("tlsPublicCertificate", s("nada")),
                ]),
            ));
            node.push((
                "mediaControllers",
                J::Arr(
                    n.media_controllers
                        .iter()
                        .enumerate()
                        .map(|(k, mc)| {
                            J::Obj(vec![
                                (
                                    "coordinate",
                                    s(format!("MemoryBoard/1/MediaController/{}", k + 1)),
                                ),
                                ("memorySize", J::Int(mc.memory_size as i64)),
                            ])
                        })
                        .collect(),
                ),
            ));
            members.push(J::Obj(node));
            i += 1;
        }
        let mut e: Vec<(&'static str, J)> = vec![(
            "coordinate",
            s(format!("Enclosure/{}/EncNum/{enc}", u_of(enc))),
        )];
        if !phys {
            e.push((
                "iZoneBoards",
                J::Arr(
                    (1..=2)
                        .map(|iz| {
                            let ip = format!("10.254.{enc}.{}", 100 + iz);
                            J::Obj(vec![
                                ("coordinate", s(format!("IZone/1/IZoneBoard/{iz}"))),
                                (
                                    "izBoardMp",
                                    management_processor("IZoneBoardMp/1", "switchmp", ip),
                                ),
                            ])
                        })
                        .collect(),
                ),
            ));
        }
        e.push(("nodes", J::Arr(members)));
        enclosures.push(J::Obj(e));
    }

    // LZA: the real IGs. PHYSADDR: one (empty) group per node, id node_id - 1.
    let rack_prefix = format!("{dc_coord}/{rack_coord}");
    let groups: Vec<J> = match topo.mode {
        Mode::Lza => topo
            .interleave_groups
            .iter()
            .map(|g| {
                let mcs = g
                    .media_controllers
                    .iter()
                    .filter_map(|mc| {
                        let n = topo.nodes.iter().find(|n| n.node_id == mc.node_id)?;
                        Some(s(format!(
                            "{rack_prefix}/Enclosure/{}/EncNum/{}/Node/{}/{}",
                            u_of(n.enc),
                            n.enc,
                            n.node,
                            mc.coordinate
                        )))
                    })
                    .collect();
                J::Obj(vec![
                    ("groupId", J::Int(i64::from(g.group_id))),
                    ("mediaControllers", J::Arr(mcs)),
                ])
            })
            .collect(),
        Mode::PhysAddr => topo
            .nodes
            .iter()
            .map(|n| {
                J::Obj(vec![
                    ("groupId", J::Int(i64::from(n.node_id - 1))),
                    ("mediaControllers", J::Arr(Vec::new())),
                ])
            })
            .collect(),
    };

    let doc = J::Obj(vec![
        (
            "_comment",
            s(format!(
                "transmogrified from file \"{}\" on {}",
                topo.source,
                ctime_utc(now)
            )),
        ),
        ("coordinate", s(dc_coord.clone())),
        (
            "domains",
            J::Obj(vec![
                ("_comment", s("See Manifesting README for FAME extensions")),
                ("localData", s("N/A for FAME")),
                ("publicData", s(domain.clone())),
                ("management", s("N/A for FAME")),
            ]),
        ),
        (
            "servers",
            J::Arr(vec![J::Obj(vec![
                ("coordinate", s(rack_coord.clone())),
                ("ipv4Address", s(torms.clone())),
                ("services", services),
            ])]),
        ),
        (
            "racks",
            J::Arr(vec![J::Obj(vec![
                ("coordinate", s(rack_coord)),
                ("enclosures", J::Arr(enclosures)),
            ])]),
        ),
        ("interleaveGroups", J::Arr(groups)),
    ]);
    let mut out = String::new();
    write_json(&doc, 0, &mut out);
    out.push('\n');
    Some(out)
}

pub(crate) fn write_verbose(
    topo: &Topology,
    level: u32,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if level == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "book size = {} ({})",
        topo.book_size,
        format_size(topo.book_size)
    )?;
    writeln!(
        out,
        "{} books == {} (0x{:016x}) total NVM bytes",
        topo.books_total(),
        topo.nvm_bytes_total(),
        topo.nvm_bytes_total()
    )?;
    if topo.format == SourceFormat::Json {
        let mcs: usize = topo.nodes.iter().map(|n| n.media_controllers.len()).sum();
        writeln!(
            out,
            "{} node(s), {} MC(s), {} IG(s)",
            topo.nodes.len(),
            mcs,
            topo.interleave_groups.len()
        )?;
    }
    if topo.mode == Mode::PhysAddr {
        for n in &topo.nodes {
            writeln!(out, "[{}]", n.hostname)?;
            for r in &n.ranges {
                writeln!(out, "\t0x{:016x} -> 0x{:016x}", r.addr, r.addr + r.size - 1)?;
            }
        }
    }
    if level < 2 {
        return Ok(());
    }
    for n in &topo.nodes {
        writeln!(
            out,
            "node_id: {} (mac: {}) - rack = {} / enc = {} / node = {}",
            n.node_id, n.soc.mac_address, n.rack, n.enc, n.node
        )?;
    }
    match topo.mode {
        Mode::Lza => {
            for g in &topo.interleave_groups {
                writeln!(out, "InterleaveGroup: {}", g.group_id)?;
                for mc in &g.media_controllers {
                    writeln!(
                        out,
                        "  node_id {:2}: {} books, rawCID = {}",
                        mc.node_id, mc.module_size_books, mc.raw_cid
                    )?;
                }
            }
            for g in &topo.interleave_groups {
                let gid = u64::from(g.group_id);
                for k in 0..g.total_books() {
                    writeln!(
                        out,
                        "lza 0x{:016x}, IG = {}, igoffset = {}",
                        (gid << 46) | (k << 33),
                        gid,
                        k
                    )?;
                }
            }
        }
        Mode::PhysAddr => {
            for n in &topo.nodes {
                let value = 65536 + u64::from(n.node_id - 1);
                let mut book_num = 0u64;
                for r in &n.ranges {
                    for b in 0..r.size / topo.book_size {
                        writeln!(
                            out,
                            "0x{:x} {:5} {:5}",
                            r.addr + b * topo.book_size,
                            value,
                            book_num
                        )?;
                        book_num += 1;
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fame_ini_round_trip() {
        let text = fame_ini(4, 8 << 20, 1024);
        assert_eq!(
            text,
            "[global]\nnode_count = 4\nbook_size_bytes = 8M\nnvm_size_per_node = 1024B\n"
        );
        let t = Topology::from_ini_str("node_fame.ini", &text).unwrap();
        assert_eq!(t.nodes.len(), 4);
        assert_eq!(t.books_total(), 4096);
        assert_eq!(
            fame_ini(2, 1 << 30, 8).lines().nth(2),
            Some("book_size_bytes = 1G")
        );
    }

    #[test]
    fn ctime_format() {
        for (secs, want) in [
            (0, "Thu Jan  1 00:00:00 1970"),
            (1_764_059_100, "Tue Nov 25 08:25:00 2025"),
        ] {
            assert_eq!(ctime_utc(secs), want, "{secs}");
        }
    }

    #[test]
    fn json_strings_are_ascii() {
        let mut out = String::new();
        write_str("a\"b\\é\u{1F600}\n", &mut out);
        assert_eq!(out, "\"a\\\"b\\\\\\u00e9\\ud83d\\ude00\\n\"");
    }

    #[test]
    fn lza_json_round_trips() {
        let ini = "[global]\nnode_count = 12\nbook_size_bytes = 8M\nnvm_size_per_node = 64B\ndatacenter = dc9\n";
        let t = Topology::from_ini_str("x.ini", ini).unwrap();
        let json = t.to_tmcf_json().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["coordinate"], "/MachineVersion/1/Datacenter/dc9");
        assert_eq!(v["servers"][0]["services"][0]["bookSize"], 8 << 20);
        assert_eq!(v["servers"][0]["ipv4Address"], "torms.have.it.your.way");
        assert_eq!(v["racks"][0]["coordinate"], "Rack/FAME");
        assert_eq!(v["racks"][0]["enclosures"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["racks"][0]["enclosures"][1]["coordinate"],
            "Enclosure/UV/EncNum/2"
        );
        assert_eq!(
            v["racks"][0]["enclosures"][0]["nodes"][1]["nodeMp"]["ipv4Address"],
            "10.254.1.202"
        );
        assert_eq!(v["interleaveGroups"][11]["groupId"], 11);
        assert_eq!(
            v["interleaveGroups"][11]["mediaControllers"][3],
            "/MachineVersion/1/Datacenter/dc9/Rack/FAME/Enclosure/UV/EncNum/2/Node/2/MemoryBoard/1/MediaController/4"
        );
        // Python's json.dumps(indent=4) layout.
        assert!(
            json.starts_with("{\n    \"_comment\": \"transmogrified from file \\\"x.ini\\\" on ")
        );
        // The generated TMCF is itself a valid topology with the same books.
        let back = Topology::from_json_str("x.json", &json).unwrap();
        assert_eq!(back.books_total(), t.books_total());
        assert_eq!(back.nodes.len(), 12);
        assert_eq!(back.interleave_groups.len(), 12);
        assert_eq!(back.nodes[11].node_id, 12);
        assert_eq!(back.nodes[11].hostname, "node12");
        assert_eq!(
            back.interleave_groups[5].media_controllers[2].raw_cid,
            t.interleave_groups[5].media_controllers[2].raw_cid
        );
    }

    #[test]
    fn physaddr_json_omits_hardware() {
        let ini = "[global]\nnode_count = 2\nbook_size_bytes = 2M\n[enclosure1]\nu = U7\n[node01]\nnode_id = 1\nnvm_size = 4B @ 0x40000000\n[node12]\nnode_id = 12\nnvm_size = 4B @ 0x80000000\n";
        let t = Topology::from_ini_str("p.ini", ini).unwrap();
        let v: serde_json::Value = serde_json::from_str(&t.to_tmcf_json().unwrap()).unwrap();
        let encs = v["racks"][0]["enclosures"].as_array().unwrap();
        assert_eq!(encs.len(), 2);
        assert_eq!(encs[0]["coordinate"], "Enclosure/U7/EncNum/1");
        for e in encs {
            assert!(e.get("iZoneBoards").is_none());
            assert!(e["nodes"][0].get("nodeMp").is_none());
            assert_eq!(e["nodes"][0]["mediaControllers"], serde_json::json!([]));
        }
        assert_eq!(v["interleaveGroups"][1]["groupId"], 11);
    }

    #[test]
    fn verbose_listing() {
        let t = Topology::from_ini_str(
            "p.ini",
            "[global]\nnode_count = 1\nbook_size_bytes = 2M\n[node01]\nnode_id = 1\nnvm_size = 2B @ 0x40000000\n",
        )
        .unwrap();
        let mut out = Vec::new();
        t.write_verbose(2, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\t0x0000000040000000 -> 0x00000000403fffff"),
            "{text}"
        );
        assert!(text.contains("0x40200000 65536     1"), "{text}");
    }
}
