//! Which node this is (spec §1.4): `--physloc rack:enc:node`, `--node-id N`, else a FAME MAC of
//! the form `48:50:42:NN:NN:NN` (NN = the node number written in decimal digits).

use crate::link::Identity;

/// Nodes per enclosure and enclosures per rack in The Machine's numbering.
const NODES_PER_ENC: i64 = 10;
const ENCS_PER_RACK: i64 = 8;
const MAX_NODE_ID: i64 = 80;

fn identity(rack: i64, enc: i64, node: i64) -> Identity {
    Identity {
        node_id: (rack - 1) * 80 + (enc - 1) * NODES_PER_ENC + node,
        physloc: format!("{rack}_{enc}_{node}"),
    }
}

/// Parses `rack:enc:node`.
pub fn from_physloc(s: &str) -> Result<Identity, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let nums: Option<Vec<i64>> = parts.iter().map(|p| p.trim().parse().ok()).collect();
    match nums.as_deref() {
        Some(&[rack, enc, node])
            if rack == 1 && (1..=ENCS_PER_RACK).contains(&enc) && (1..=NODES_PER_ENC).contains(&node) =>
        {
            Ok(identity(rack, enc, node))
        }
        _ => Err(format!(
            "--physloc {s:?} is not a node location: use rack:enc:node with rack 1, enc 1-8, node 1-10 (e.g. 1:2:3 is node 13), or --node-id N"
        )),
    }
}

/// Node id 1..80 to its location.
pub fn from_node_id(id: i64) -> Result<Identity, String> {
    if !(1..=MAX_NODE_ID).contains(&id) {
        return Err(format!(
            "--node-id {id} is out of range: node ids are 1 to {MAX_NODE_ID}"
        ));
    }
    let enc = (id - 1) / NODES_PER_ENC + 1;
    let node = (id - 1) % NODES_PER_ENC + 1;
    Ok(identity(1, enc, node))
}

/// The node id encoded in a FAME MAC address, if it is one.
pub fn from_mac(mac: &str) -> Option<i64> {
    let mac = mac.trim().to_ascii_lowercase();
    let rest = mac.strip_prefix("48:50:42:")?;
    let octets: Vec<&str> = rest.split(':').collect();
    if octets.len() != 3 || octets[0] != octets[1] || octets[1] != octets[2] {
        return None;
    }
    // The octet is read as a decimal number: VM 12 gets 48:50:42:12:12:12.
    let n: i64 = octets[0].parse().ok()?;
    (1..=40).contains(&n).then_some(n)
}

/// Scans the network interfaces for a FAME MAC.
pub fn discover() -> Result<Identity, String> {
    let mut names: Vec<_> = std::fs::read_dir("/sys/class/net")
        .map_err(|e| format!("cannot list /sys/class/net: {e}"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for dir in names {
        if let Ok(mac) = std::fs::read_to_string(dir.join("address")) {
            if let Some(id) = from_mac(&mac) {
                tracing::info!(
                    "node id {id} from the MAC {} of {}",
                    mac.trim(),
                    dir.display()
                );
                return from_node_id(id);
            }
        }
    }
    Err("could not derive this node's id: no network interface has a FAME MAC 48:50:42:NN:NN:NN; use --physloc rack:enc:node or --node-id N".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physloc_and_ids() {
        assert_eq!(from_physloc("1:2:3").unwrap().node_id, 13);
        assert_eq!(from_physloc("1:2:3").unwrap().physloc, "1_2_3");
        assert!(from_physloc("3").is_err());
        assert!(from_physloc("2:1:1").is_err());
        assert_eq!(from_node_id(13).unwrap().physloc, "1_2_3");
        assert_eq!(from_node_id(10).unwrap().physloc, "1_1_10");
        assert!(from_node_id(0).is_err());
    }

    #[test]
    fn fame_macs() {
        assert_eq!(from_mac("48:50:42:07:07:07\n"), Some(7));
        assert_eq!(from_mac("48:50:42:12:12:12"), Some(12));
        assert_eq!(from_mac("48:50:42:12:12:13"), None);
        assert_eq!(from_mac("52:54:00:12:12:12"), None);
        assert_eq!(from_mac("48:50:42:0a:0a:0a"), None);
    }
}
