//! TMCF JSON topologies ("The Machine Config File"), as `tmconfig.TMConfig` reads them.
//!
//! Relative coordinates are made absolute by prefixing the parent's coordinate; node ids are
//! `(enc-1)*10 + node`; every media controller must belong to exactly one interleave group.
//! Structural problems are collected and reported together as one error, like the original.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::ini::check_book_size;
use super::{
    parse_size, raw_cid, ConfigError, InterleaveGroup, MediaController, Mode, Node, Soc,
    SourceFormat, Topology, MAX_BOOKS_PER_IG, MAX_ENCLOSURE, MAX_IG_ID, MAX_MC_PER_NODE,
    MAX_NODE_IN_ENCLOSURE, MIN_JSON_BOOK_SIZE,
};

/// Placeholder the original writes for a missing `tlsPublicCertificate`/`hostname`.
const FORGOT: &str = "You forgot an attribute.  BAD GEEK! BAD!";

/// Proper spelling of the coordinate keywords whose case is checked.
const STUDLY: &[&str] = &[
    "MachineVersion",
    "Datacenter",
    "Frame",
    "Rack",
    "Enclosure",
    "EncNum",
    "Node",
    "MemoryBoard",
    "SocBoard",
];

/// A scalar rendered as text (`null` and containers give `None`).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        _ => None,
    }
}

/// A size: a JSON integer or a string with the K/M/G/T multiplier syntax.
fn size_value(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{n} is not a non-negative integer")),
        Value::String(s) => parse_size(s, None).map_err(|e| e.to_string()),
        other => Err(format!(
            "{other} is not a size (expected e.g. \"8M\" or 8388608)"
        )),
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

struct Walker {
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Walker {
    /// Validates a coordinate and returns it made absolute (the original's `finish_child`).
    fn finish(&mut self, title: &str, coord: &str, parent: Option<&str>) -> String {
        let head = format!("{title} coordinate \"{coord}\"");
        if coord.chars().any(char::is_whitespace) {
            self.errors
                .push(format!("{head} has superfluous whitespace"));
        }
        let abs = match parent {
            None => coord.to_string(),
            Some(p) => {
                if coord.trim_matches('/') != coord {
                    self.errors.push(format!(
                        "{head} has leading or trailing \"/\" (child coordinates are relative to their parent)"
                    ));
                }
                format!("{p}/{coord}")
            }
        };
        for elem in coord.split('/') {
            if let Some(proper) = STUDLY.iter().find(|s| s.eq_ignore_ascii_case(elem)) {
                if *proper != elem {
                    self.errors.push(format!(
                        "{head} case should be \"{proper}\" (not \"{elem}\")"
                    ));
                }
            }
        }
        abs
    }

    /// The non-empty array `key` of `obj`, or an error "<title> <coord> has no <key>".
    fn children<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        key: &str,
        title: &str,
        coord: &str,
    ) -> Option<&'v Vec<Value>> {
        match obj.get(key) {
            Some(Value::Array(a)) if !a.is_empty() => Some(a),
            Some(Value::Array(_)) | None => {
                self.errors.push(format!("{title} {coord} has no {key}"));
                None
            }
            Some(other) => {
                self.errors.push(format!(
                    "{title} {coord}: \"{key}\" must be a list, not {}",
                    kind(other)
                ));
                None
            }
        }
    }

    /// The `coordinate` string of a list element, or an error naming its path.
    fn coordinate<'v>(
        &mut self,
        v: &'v Value,
        path: &str,
    ) -> Option<(&'v Map<String, Value>, &'v str)> {
        let Some(obj) = v.as_object() else {
            self.errors
                .push(format!("{path} must be an object, not {}", kind(v)));
            return None;
        };
        match obj.get("coordinate") {
            Some(Value::String(c)) => Some((obj, c.as_str())),
            Some(other) => {
                self.errors.push(format!(
                    "{path}.coordinate = {}: must be a string",
                    shown(other)
                ));
                None
            }
            None => {
                self.errors.push(format!("{path} has no \"coordinate\""));
                None
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The number at the end of a coordinate (`Enclosure/U3/EncNum/1` -> 1).
fn last_number(coord: &str) -> Option<u32> {
    coord.rsplit('/').next().and_then(|s| s.parse().ok())
}

/// The book size from the librarian service (new `servers` or old `managementServer` style).
fn book_size(root: &Map<String, Value>, warnings: &mut Vec<String>) -> Result<u64, String> {
    // name -> (service object, where it was found)
    let mut services: Vec<(String, &Map<String, Value>, String)> = Vec::new();
    if let Some(ms) = root.get("managementServer") {
        let Some(ms) = ms.as_object() else {
            return Err(format!(
                "managementServer must be an object, not {}",
                kind(ms)
            ));
        };
        let mut host: Option<(String, String)> = None;
        for (name, detail) in ms {
            let Some(detail) = detail.as_object() else {
                continue; // scalars such as softwareRecipeUri
            };
            if let Some(Value::String(uri)) = detail.get("restUri") {
                if let Some(h) = uri.split(':').nth(1).and_then(|s| s.rsplit('/').next()) {
                    if !h.is_empty() {
                        match &host {
                            Some((prev, from)) if prev != h => {
                                return Err(format!(
                                    "managementServer.{name}.restUri = \"{uri}\": managementServer:{name} hostname mismatch: \"{h}\" but managementServer.{from} uses \"{prev}\"; all services of the managementServer must use one host"
                                ));
                            }
                            Some(_) => {}
                            None => host = Some((h.to_string(), name.clone())),
                        }
                    }
                }
            }
            services.push((name.clone(), detail, format!("managementServer.{name}")));
        }
        if host.is_none() {
            return Err(
                "Cannot discern managementServer hostname: no service of managementServer has a restUri like \"https://HOST:PORT/...\"".to_string(),
            );
        }
    }
    if let Some(servers) = root.get("servers") {
        let Some(servers) = servers.as_array() else {
            return Err(format!("\"servers\" must be a list, not {}", kind(servers)));
        };
        for (i, server) in servers.iter().enumerate() {
            let Some(server) = server.as_object() else {
                return Err(format!(
                    "servers[{i}] must be an object, not {}",
                    kind(server)
                ));
            };
            let Some(list) = server.get("services") else {
                continue;
            };
            let Some(list) = list.as_array() else {
                return Err(format!(
                    "servers[{i}].services must be a list, not {}",
                    kind(list)
                ));
            };
            for (j, svc) in list.iter().enumerate() {
                let path = format!("servers[{i}].services[{j}]");
                let Some(svc) = svc.as_object() else {
                    return Err(format!("{path} must be an object, not {}", kind(svc)));
                };
                let Some(Value::String(name)) = svc.get("service") else {
                    return Err(format!(
                        "{path} has no \"service\" name (e.g. \"service\": \"librarian\")"
                    ));
                };
                services.push((name.clone(), svc, path));
            }
        }
    }
    if services.is_empty() {
        return Err(
            "Cannot find any services: add a \"servers\" list (or an old-style \"managementServer\") with a \"librarian\" service that sets bookSize".to_string(),
        );
    }
    for (name, svc, _) in &services {
        if !svc.contains_key("tlsPublicCertificate") {
            warnings.push(format!("service \"{name}\" missing tlsPublicCertificate"));
        }
    }
    // Like the original's dict, the last definition of a service wins.
    let Some((_, lib, path)) = services.iter().rev().find(|(n, _, _)| n == "librarian") else {
        return Err(
            "no \"librarian\" service found: the book size comes from its bookSize (e.g. {\"service\": \"librarian\", \"bookSize\": \"8M\"})".to_string(),
        );
    };
    let Some(raw) = lib.get("bookSize") else {
        return Err(format!(
            "{path} (librarian) has no bookSize: add e.g. \"bookSize\": \"8M\""
        ));
    };
    let bs = size_value(raw).map_err(|e| format!("{path}.bookSize = {}: {e}", shown(raw)))?;
    check_book_size(bs, MIN_JSON_BOOK_SIZE)
        .map_err(|e| format!("{path}.bookSize = {}: book size {e}", shown(raw)))?;
    Ok(bs)
}

/// Builds a topology from a parsed TMCF document.
pub(crate) fn from_value(file: &str, root: &Value) -> Result<Topology, ConfigError> {
    let fail = |msg: String| ConfigError::new(file, msg);
    let Some(root) = root.as_object() else {
        return Err(fail(format!(
            "not a TMCF topology: the JSON document is {}, expected an object with \"coordinate\", \"racks\" and \"interleaveGroups\"",
            kind(root)
        )));
    };
    if !root.contains_key("racks") {
        return Err(fail(
            "not a TMCF topology: No racks were found (the document has no \"racks\" list)"
                .to_string(),
        ));
    }
    let top = match root.get("coordinate") {
        Some(Value::String(c)) => c.clone(),
        Some(other) => {
            return Err(fail(format!(
                "top-level coordinate = {}: must be a string like \"/MachineVersion/1/Datacenter/<name>\"",
                shown(other)
            )))
        }
        None => {
            return Err(fail(
                "not a TMCF topology: no top-level \"coordinate\" (e.g. \"/MachineVersion/1/Datacenter/<name>\")".to_string(),
            ))
        }
    };
    let mut w = Walker {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let book_size = book_size(root, &mut w.warnings)
        .map_err(|e| fail(format!("Illegal configuration cannot be used: {e}")))?;

    if !top.starts_with("/MachineVersion/1/") {
        w.errors.push(format!(
            "Illegal MachineVersion \"{top}\": the top-level coordinate must start with \"/MachineVersion/1/\""
        ));
    }
    let top = w.finish("Primary", &top, None);

    let mut nodes: Vec<Node> = Vec::new();
    // absolute MC coordinate -> (node index, MC index)
    let mut mc_index: HashMap<String, (usize, usize)> = HashMap::new();
    let mut enc_seen: Vec<String> = Vec::new();
    let mut node_seen: HashMap<String, ()> = HashMap::new();
    let mut ids: HashMap<u32, String> = HashMap::new();

    let racks = match root.get("racks") {
        Some(Value::Array(a)) if !a.is_empty() => a.as_slice(),
        Some(Value::Array(_)) => {
            w.errors.push(format!("Primary {top} has no racks"));
            &[]
        }
        Some(other) => {
            return Err(fail(format!(
                "\"racks\" must be a list, not {}",
                kind(other)
            )))
        }
        None => &[],
    };
    for (ri, rack) in racks.iter().enumerate() {
        let rpath = format!("racks[{ri}]");
        let Some((rack, rc)) = w.coordinate(rack, &rpath) else {
            continue;
        };
        let rack_abs = w.finish("Rack", rc, Some(&top));
        let rack_name = rack_abs.rsplit('/').next().unwrap_or_default().to_string();
        let Some(encs) = w.children(rack, "enclosures", "Rack", &rack_abs) else {
            continue;
        };
        for (ei, enc) in encs.iter().enumerate() {
            let epath = format!("{rpath}.enclosures[{ei}]");
            let Some((enc, ec)) = w.coordinate(enc, &epath) else {
                continue;
            };
            let enc_abs = w.finish("Enclosure", ec, Some(&rack_abs));
            if enc_seen.contains(&enc_abs) {
                w.errors
                    .push(format!("Duplicate enclosure coordinate {enc_abs}"));
                continue;
            }
            enc_seen.push(enc_abs.clone());
            let enc_num = match last_number(ec) {
                Some(n) if (1..=MAX_ENCLOSURE).contains(&n) => n,
                _ => {
                    w.errors.push(format!(
                        "Enclosure coordinate \"{ec}\": the last element must be the enclosure number 1..{MAX_ENCLOSURE} (e.g. \"Enclosure/U3/EncNum/1\")"
                    ));
                    continue;
                }
            };
            let Some(enc_nodes) = w.children(enc, "nodes", "Enclosure", &enc_abs) else {
                continue;
            };
            for (ni, node) in enc_nodes.iter().enumerate() {
                let npath = format!("{epath}.nodes[{ni}]");
                let Some((nobj, nc)) = w.coordinate(node, &npath) else {
                    continue;
                };
                let node_abs = w.finish("Node", nc, Some(&enc_abs));
                if node_seen.insert(node_abs.clone(), ()).is_some() {
                    w.errors
                        .push(format!("Duplicate node coordinate {node_abs}"));
                    continue;
                }
                let node_num = match last_number(nc) {
                    Some(n) if (1..=MAX_NODE_IN_ENCLOSURE).contains(&n) => n,
                    _ => {
                        w.errors.push(format!(
                            "Node coordinate \"{nc}\": the last element must be the node number 1..{MAX_NODE_IN_ENCLOSURE} (e.g. \"Node/1\")"
                        ));
                        continue;
                    }
                };
                let node_id = (enc_num - 1) * 10 + node_num;
                if let Some(other) = ids.get(&node_id) {
                    w.errors.push(format!(
                        "Node {node_abs}: node id {node_id} (enclosure {enc_num}, node {node_num}) is also used by {other}"
                    ));
                    continue;
                }
                ids.insert(node_id, node_abs.clone());
                let dotname = format!("rack.{rack_name}.enc.{enc_num}.node.{node_num}");

                let soc = match nobj.get("soc") {
                    Some(Value::Object(s)) => s,
                    Some(other) => {
                        w.errors.push(format!(
                            "Node {node_abs}: \"soc\" must be an object, not {}",
                            kind(other)
                        ));
                        continue;
                    }
                    None => {
                        w.errors.push(format!("Node {node_abs} has no soc"));
                        continue;
                    }
                };
                let soc_abs = match soc.get("coordinate") {
                    Some(Value::String(c)) => w.finish("element", c, Some(&node_abs)),
                    _ => {
                        w.errors.push(format!(
                            "Node {node_abs}: soc has no \"coordinate\" string (e.g. \"SocBoard/1/Soc/1\")"
                        ));
                        continue;
                    }
                };
                let hostname = match soc.get("hostname").and_then(scalar_text) {
                    Some(h) if !h.is_empty() => h,
                    _ => {
                        w.warnings
                            .push(format!("SOC coord \"{dotname}\" missing hostname"));
                        Node::default_hostname(node_id)
                    }
                };
                let mac = soc
                    .get("macAddress")
                    .and_then(scalar_text)
                    .unwrap_or_else(|| "n/a".to_string());
                let cert = match soc.get("tlsPublicCertificate").and_then(scalar_text) {
                    Some(c) => c,
                    None => {
                        w.warnings.push(format!(
                            "node SOC \"{dotname}\" missing tlsPublicCertificate"
                        ));
                        FORGOT.to_string()
                    }
                };
                // String scalars that look like integers were converted by the original loader.
                let serial = match nobj.get("serialNumber") {
                    Some(Value::String(s)) => parse_size(s, None)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|_| s.clone()),
                    Some(v) => scalar_text(v).unwrap_or_default(),
                    None => {
                        w.warnings
                            .push(format!("Node \"{dotname}\" missing serialNumber"));
                        String::new()
                    }
                };
                let mut node = Node {
                    node_id,
                    rack: rack_name.clone(),
                    enc: enc_num,
                    node: node_num,
                    coordinate: node_abs.clone(),
                    serial_number: serial,
                    hostname,
                    soc: Soc {
                        coordinate: soc_abs,
                        mac_address: mac,
                        tls_public_certificate: cert,
                    },
                    media_controllers: Vec::new(),
                    ranges: Vec::new(),
                };
                let node_idx = nodes.len();
                if let Some(mcs) = w.children(nobj, "mediaControllers", "Node", &node_abs) {
                    for (mi, mc) in mcs.iter().enumerate() {
                        let mpath = format!("{npath}.mediaControllers[{mi}]");
                        let Some((mobj, mcc)) = w.coordinate(mc, &mpath) else {
                            continue;
                        };
                        let mc_abs = w.finish("MediaController", mcc, Some(&node_abs));
                        if mc_index.contains_key(&mc_abs) {
                            w.errors.push(format!("Duplicate MC coordinate {mc_abs}"));
                            continue;
                        }
                        let k = match last_number(mcc) {
                            Some(k) if (1..=MAX_MC_PER_NODE).contains(&k) => k,
                            _ => {
                                w.errors.push(format!(
                                    "MC @ {mc_abs}: the last element must be the media controller number 1..{MAX_MC_PER_NODE}"
                                ));
                                continue;
                            }
                        };
                        let Some(raw) = mobj.get("memorySize") else {
                            w.errors.push(format!(
                                "MC @ {mc_abs} has no memorySize (e.g. \"memorySize\": \"1G\")"
                            ));
                            continue;
                        };
                        let mem = match size_value(raw) {
                            Ok(m) => m,
                            Err(e) => {
                                w.errors.push(format!(
                                    "MC @ {mc_abs}: memorySize = {}: {e}",
                                    shown(raw)
                                ));
                                continue;
                            }
                        };
                        if !mem.is_multiple_of(book_size) {
                            w.errors.push(format!(
                                "MC @ {mc_abs}: memorySize = {} is not a multiple of the book size {book_size}",
                                shown(raw)
                            ));
                            continue;
                        }
                        let books = mem / book_size;
                        if books > MAX_BOOKS_PER_IG {
                            w.errors.push(format!(
                                "MC @ {mc_abs} has too much NVM: memorySize = {} is {books} books, at most {MAX_BOOKS_PER_IG}",
                                shown(raw)
                            ));
                            continue;
                        }
                        mc_index.insert(mc_abs.clone(), (node_idx, node.media_controllers.len()));
                        node.media_controllers.push(MediaController {
                            node_id,
                            ig: u32::MAX, // set below from interleaveGroups
                            coordinate: mc_abs,
                            raw_cid: raw_cid(enc_num, node_num, k),
                            module_size_books: books,
                            memory_size: mem,
                        });
                    }
                }
                nodes.push(node);
            }
        }
    }

    // Interleave groups reference MCs by absolute coordinate.
    let mut groups: Vec<InterleaveGroup> = Vec::new();
    let mut assigned: HashMap<String, u32> = HashMap::new();
    let mut group_ids: BTreeMap<u32, ()> = BTreeMap::new();
    let empty = Map::new();
    if let Some(igs) = w.children(root, "interleaveGroups", "Primary", &top) {
        for (gi, ig) in igs.iter().enumerate() {
            let gpath = format!("interleaveGroups[{gi}]");
            let Some(ig) = ig.as_object() else {
                w.errors
                    .push(format!("{gpath} must be an object, not {}", kind(ig)));
                continue;
            };
            let gid = match ig.get("groupId") {
                Some(v) => match size_value(v) {
                    Ok(g) if g <= u64::from(MAX_IG_ID) => g as u32,
                    _ => {
                        w.errors.push(format!(
                            "{gpath}.groupId = {}: must be an integer 0..{MAX_IG_ID}",
                            shown(v)
                        ));
                        continue;
                    }
                },
                None => {
                    w.errors.push(format!("{gpath} has no groupId"));
                    continue;
                }
            };
            if group_ids.insert(gid, ()).is_some() {
                w.errors
                    .push(format!("Duplicate interleave group ID {gid}"));
                continue;
            }
            let mut group = InterleaveGroup {
                group_id: gid,
                media_controllers: Vec::new(),
            };
            let title = format!("IG {gid}");
            if let Some(mcs) = w.children(ig, "mediaControllers", &title, "") {
                for entry in mcs {
                    let (coord, obj) = match entry {
                        Value::String(s) => (s.as_str(), &empty),
                        Value::Object(o) => match o.get("coordinate") {
                            Some(Value::String(s)) => (s.as_str(), o),
                            _ => {
                                w.errors.push(format!(
                                    "IG {gid}: media controller entry {} has no \"coordinate\" string",
                                    entry
                                ));
                                continue;
                            }
                        },
                        other => {
                            w.errors.push(format!(
                                "IG {gid}: media controller entry {other} must be a coordinate string"
                            ));
                            continue;
                        }
                    };
                    if obj.contains_key("memorySize") {
                        w.errors.push(format!(
                            "IG {gid} MC {coord} sets memorySize (only the node's MC entry may)"
                        ));
                    }
                    if let Some(other) = assigned.get(coord) {
                        w.errors.push(format!(
                            "IG {gid} MC {coord} is already in IG {other}: an MC belongs to one interleave group"
                        ));
                        continue;
                    }
                    let Some(&(ni, mi)) = mc_index.get(coord) else {
                        w.errors
                            .push(format!("IG {gid} MC {coord} not in any node"));
                        continue;
                    };
                    assigned.insert(coord.to_string(), gid);
                    let mc = &mut nodes[ni].media_controllers[mi];
                    mc.ig = gid;
                    group.media_controllers.push(mc.clone());
                }
            }
            if group.total_books() > MAX_BOOKS_PER_IG {
                w.errors.push(format!(
                    "IG {gid} has {} books, at most {MAX_BOOKS_PER_IG} (13-bit book numbers)",
                    group.total_books()
                ));
            }
            groups.push(group);
        }
    }

    if !w.errors.is_empty() {
        let mut msg = format!("Illegal configuration cannot be used: {}", w.errors[0]);
        if w.errors.len() > 1 {
            msg.push_str(&format!(" ({} more problem(s) below)", w.errors.len() - 1));
            for e in &w.errors[1..] {
                msg.push_str("\n  ");
                msg.push_str(e);
            }
        }
        return Err(fail(msg));
    }
    let unused: Vec<&str> = nodes
        .iter()
        .flat_map(|n| n.media_controllers.iter())
        .filter(|m| m.ig == u32::MAX)
        .map(|m| m.coordinate.as_str())
        .collect();
    if !unused.is_empty() {
        let shown: Vec<&str> = unused.iter().copied().take(4).collect();
        let more = if unused.len() > 4 {
            format!(" and {} more", unused.len() - 4)
        } else {
            String::new()
        };
        return Err(fail(format!(
            "Inconsistent configuration cannot be used: {} MC(s) not assigned to an IG: {}{more}; list every media controller in one \"interleaveGroups\" entry",
            unused.len(),
            shown.join(", ")
        )));
    }
    let topo = Topology {
        source: file.to_string(),
        format: SourceFormat::Json,
        book_size,
        mode: Mode::Lza,
        nodes,
        interleave_groups: groups,
        warnings: w.warnings,
        ini: None,
    };
    if topo.books_total() == 0 {
        return Err(fail(
            "no media controller has any NVM (every memorySize is 0): the Librarian needs at least one book".to_string(),
        ));
    }
    Ok(topo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "coordinate": "/MachineVersion/1/Datacenter/dc",
            "servers": [{
                "ipv4Address": "torms",
                "services": [
                    {"service": "librarian", "bookSize": "8M", "tlsPublicCertificate": "x"}
                ]
            }],
            "racks": [{
                "coordinate": "Rack/A1",
                "enclosures": [{
                    "coordinate": "Enclosure/U3/EncNum/2",
                    "nodes": [{
                        "coordinate": "Node/3",
                        "serialNumber": "0042",
                        "soc": {"coordinate": "SocBoard/1/Soc/1", "hostname": "h13",
                                "macAddress": "aa", "tlsPublicCertificate": "c"},
                        "mediaControllers": [
                            {"coordinate": "MemoryBoard/1/MediaController/1", "memorySize": "1G"},
                            {"coordinate": "MemoryBoard/1/MediaController/2", "memorySize": 8388608}
                        ]
                    }]
                }]
            }],
            "interleaveGroups": [{
                "groupId": 5,
                "mediaControllers": [
                    "/MachineVersion/1/Datacenter/dc/Rack/A1/Enclosure/U3/EncNum/2/Node/3/MemoryBoard/1/MediaController/2",
                    {"coordinate": "/MachineVersion/1/Datacenter/dc/Rack/A1/Enclosure/U3/EncNum/2/Node/3/MemoryBoard/1/MediaController/1"}
                ]
            }]
        })
    }

    fn bad(v: &Value) -> String {
        match from_value("t.json", v) {
            Ok(t) => panic!("expected an error, got {}", t.summary()),
            Err(e) => {
                let s = e.to_string();
                assert!(s.starts_with("t.json: "), "{s}");
                s
            }
        }
    }

    #[test]
    fn new_style() {
        let t = from_value("t.json", &doc()).unwrap();
        assert_eq!(t.book_size, 8 << 20);
        assert_eq!(t.mode, Mode::Lza);
        let n = &t.nodes[0];
        assert_eq!((n.node_id, n.enc, n.node), (13, 2, 3));
        assert_eq!(n.rack, "A1");
        assert_eq!(n.hostname, "h13");
        assert_eq!(n.serial_number, "42");
        assert_eq!(
            n.coordinate,
            "/MachineVersion/1/Datacenter/dc/Rack/A1/Enclosure/U3/EncNum/2/Node/3"
        );
        assert_eq!(
            n.soc.coordinate,
            "/MachineVersion/1/Datacenter/dc/Rack/A1/Enclosure/U3/EncNum/2/Node/3/SocBoard/1/Soc/1"
        );
        assert_eq!(n.media_controllers[0].module_size_books, 128);
        assert_eq!(n.media_controllers[0].raw_cid, (1 << 9) | (2 << 4) | 8);
        assert_eq!(n.media_controllers[1].module_size_books, 1);
        assert_eq!(t.interleave_groups.len(), 1);
        let g = &t.interleave_groups[0];
        assert_eq!(g.group_id, 5);
        assert_eq!(g.total_books(), 129);
        // IG order is the IG list's, not the node's.
        assert_eq!(g.media_controllers[0].module_size_books, 1);
        assert_eq!(t.books_total(), 129);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn old_style_management_server() {
        let mut d = doc();
        let o = d.as_object_mut().unwrap();
        o.remove("servers");
        o.insert(
            "managementServer".into(),
            json!({"softwareRecipeUri": "file:x", "librarian": {"bookSize": "4M"},
                   "monitoring": {"restUri": "https://top.of.rack:11000/rest/v1"}}),
        );
        let t = from_value("t.json", &d).unwrap();
        assert_eq!(t.book_size, 4 << 20);
        assert_eq!(t.books_total(), 258);
        assert!(t
            .warnings
            .iter()
            .any(|w| w.contains("service \"librarian\" missing tlsPublicCertificate")));
        // No restUri at all.
        d["managementServer"] = json!({"librarian": {"bookSize": "16M"}});
        assert!(bad(&d).contains("Cannot discern managementServer hostname"));
        // Disagreeing hosts.
        d["managementServer"] = json!({"librarian": {"bookSize": "16M", "restUri": "http://a:1/x"},
                                       "other": {"restUri": "http://b:1/x"}});
        assert!(bad(&d).contains("hostname mismatch"));
    }

    #[test]
    fn book_size_rules() {
        let mut d = doc();
        d["servers"][0]["services"][0]["bookSize"] = json!("3M");
        let m = bad(&d);
        assert!(
            m.contains("bookSize = \"3M\"") && m.contains("power of two"),
            "{m}"
        );
        d["servers"][0]["services"][0]["bookSize"] = json!("16G");
        assert!(bad(&d).contains("out of range [1K, 8G]"));
        d["servers"][0]["services"][0]["bookSize"] = json!("8B");
        assert!(bad(&d).contains("multiplier suffix \"B\""));
        d["servers"][0]["services"][0]
            .as_object_mut()
            .unwrap()
            .remove("bookSize");
        assert!(bad(&d).contains("has no bookSize"));
        d["servers"][0]["services"][0]["service"] = json!("notlibrarian");
        assert!(bad(&d).contains("no \"librarian\" service"));
    }

    #[test]
    fn structural_errors() {
        let mut d = doc();
        d["coordinate"] = json!("/machine_rev/1/datacenter/dc");
        let m = bad(&d);
        assert!(m.contains("Illegal MachineVersion"), "{m}");
        assert!(m.contains("case should be \"Datacenter\""), "{m}");

        let mut d = doc();
        d["racks"][0]["enclosures"][0]["nodes"][0]["coordinate"] = json!("node/3");
        let m = bad(&d);
        assert!(m.contains("case should be \"Node\""), "{m}");

        let mut d = doc();
        d["racks"][0]["coordinate"] = json!("/Rack/A1");
        assert!(bad(&d).contains("has leading or trailing \"/\""));

        let mut d = doc();
        d["racks"][0]["coordinate"] = json!("Rack/A 1");
        assert!(bad(&d).contains("superfluous whitespace"));

        let mut d = doc();
        d["interleaveGroups"] = json!([]);
        assert!(bad(&d).contains("has no interleaveGroups"));

        let mut d = doc();
        d["interleaveGroups"][0]["mediaControllers"]
            .as_array_mut()
            .unwrap()
            .pop();
        let m = bad(&d);
        assert!(m.contains("MC(s) not assigned to an IG"), "{m}");
        assert!(m.contains("Inconsistent configuration"), "{m}");

        let mut d = doc();
        d["interleaveGroups"][0]["mediaControllers"][0] = json!("/nowhere");
        assert!(bad(&d).contains("IG 5 MC /nowhere not in any node"));

        let mut d = doc();
        d["interleaveGroups"][0]["mediaControllers"][1]["memorySize"] = json!("1G");
        assert!(bad(&d).contains("sets memorySize"));

        let mut d = doc();
        let g = d["interleaveGroups"][0].clone();
        d["interleaveGroups"].as_array_mut().unwrap().push(g);
        assert!(bad(&d).contains("Duplicate interleave group ID 5"));

        let mut d = doc();
        d["interleaveGroups"][0]["groupId"] = json!(128);
        assert!(bad(&d).contains("groupId = 128"));

        let mut d = doc();
        d["racks"][0]["enclosures"][0]["nodes"][0]["mediaControllers"][0]["memorySize"] =
            json!("65G");
        assert!(bad(&d).contains("has too much NVM"));

        let mut d = doc();
        d["racks"][0]["enclosures"][0]["nodes"][0]["mediaControllers"][0]["memorySize"] =
            json!("12M");
        assert!(bad(&d).contains("not a multiple of the book size"));

        let mut d = doc();
        d["racks"][0]["enclosures"][0]["coordinate"] = json!("Enclosure/U3/EncNum/9");
        assert!(bad(&d).contains("enclosure number 1..8"));

        let mut d = doc();
        d["racks"][0]["enclosures"][0]["nodes"][0]["coordinate"] = json!("Node/11");
        assert!(bad(&d).contains("node number 1..10"));

        let mut d = doc();
        let n = d["racks"][0]["enclosures"][0]["nodes"][0].clone();
        d["racks"][0]["enclosures"][0]["nodes"]
            .as_array_mut()
            .unwrap()
            .push(n);
        assert!(bad(&d).contains("Duplicate node coordinate"));

        let mut d = doc();
        d["racks"][0]["enclosures"][0]["nodes"][0]
            .as_object_mut()
            .unwrap()
            .remove("soc");
        assert!(bad(&d).contains("has no soc"));

        assert!(bad(&json!([1, 2])).contains("not a TMCF topology"));
        assert!(bad(&json!({"coordinate": "/MachineVersion/1/x"})).contains("No racks were found"));
    }

    #[test]
    fn missing_soc_attributes_are_filled() {
        let mut d = doc();
        let soc = d["racks"][0]["enclosures"][0]["nodes"][0]["soc"]
            .as_object_mut()
            .unwrap();
        soc.remove("hostname");
        soc.remove("macAddress");
        soc.remove("tlsPublicCertificate");
        let t = from_value("t.json", &d).unwrap();
        let n = &t.nodes[0];
        assert_eq!(n.hostname, "node13");
        assert_eq!(n.soc.mac_address, "n/a");
        assert_eq!(n.soc.tls_public_certificate, FORGOT);
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
    }
}
