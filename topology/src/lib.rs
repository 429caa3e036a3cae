//! Topology configs (INI and TMCF JSON) and database population, used by `book-register`.
//!
//! A [`Topology`] is the validated description of a machine: the book size, the book-id
//! interpretation ([`Mode`]), the nodes with their SOCs and media controllers, and the interleave
//! groups. It is read from one of
//!
//! * an INI file ([`Topology::from_ini_str`]) in one of three forms: the compact FAME/MFT form
//!   (`[global]` with `nvm_size_per_node`), per-node LZA sections (`nvm_size = 512B`), or per-node
//!   physical-address ranges (`nvm_size = 88B @ 0xf00000000000`, Superdome Flex / MDC 990x);
//! * a TMCF JSON document ([`Topology::from_json_str`]), new `servers` style or old
//!   `managementServer` style.
//!
//! [`Topology::create_db`] writes a fresh Librarian database for it (atomically: it is built in a
//! temporary file next to the target and renamed into place), and [`Topology::to_tmcf_json`]
//! renders an INI topology as the equivalent TMCF JSON (`book-register -j`).
//!
//! Every rejected config yields one [`ConfigError`] naming the file, the section/key, the rule
//! and the offending value.

use std::fmt;
use std::path::Path;

mod db;
mod ini;
mod output;
mod tmcf;

pub use db::DbReport;
pub use output::fame_ini;

/// Smallest legal INI book size: 2 MiB (the BII uses the 20 low bits of a book id).
pub const MIN_BOOK_SIZE: u64 = 2 << 20;
/// Largest legal book size: 8 GiB (LZA book offsets are 33 bits).
pub const MAX_BOOK_SIZE: u64 = 8 << 30;
/// Smallest book size accepted from a TMCF JSON file (the original's documented `[1K, 8G]`).
pub const MIN_JSON_BOOK_SIZE: u64 = 1 << 10;
/// Node ids run 1..=80 (one rack of 8 enclosures of 10 nodes).
pub const MAX_NODE_ID: u32 = 80;
/// Enclosures per rack.
pub const MAX_ENCLOSURE: u32 = 8;
/// Nodes per enclosure.
pub const MAX_NODE_IN_ENCLOSURE: u32 = 10;
/// Book numbers are 13 bits: at most 8192 books per interleave group (LZA) or node.
pub const MAX_BOOKS_PER_IG: u64 = 8192;
/// Interleave group ids are 7 bits in an LZA.
pub const MAX_IG_ID: u32 = 127;
/// Media controllers per node (GenZ responders 0x8..0xF).
pub const MAX_MC_PER_NODE: u32 = 8;
/// Physical addresses (book ids) must fit in an SQLite signed 64-bit integer.
pub const MAX_PHYSADDR: u64 = i64::MAX as u64;

/// How book ids and `books.intlv_group` are interpreted ("Book Id Interpretation", BII).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Legacy MFT/FAME/TMAS: `id = (IG << 46) | (book_num << 33)`, `intlv_group = IG`.
    Lza,
    /// MDC 990x / Superdome Flex: `id` = physical address, `intlv_group = 65536 | (node_id - 1)`.
    PhysAddr,
}

impl Mode {
    /// The BII mode number stored in bits 16-19 of `books.intlv_group`.
    pub fn bii(self) -> i64 {
        match self {
            Mode::Lza => lfs_db::bii::MODE_LZA,
            Mode::PhysAddr => lfs_db::bii::MODE_PHYSADDR,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Lza => "LZA",
            Mode::PhysAddr => "PHYSADDR",
        })
    }
}

/// Which syntax a topology was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Ini,
    Json,
}

/// One physical-address range of a node (PHYSADDR mode); `size` is a multiple of the book size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    pub addr: u64,
    pub size: u64,
}

/// A node's SOC (its row in the `SOCs` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soc {
    /// INI: `SocBoard/1/Soc/1`; JSON: the absolute coordinate.
    pub coordinate: String,
    /// INI: `52:54:42:NN:NN:NN` (NN = node id, two decimal digits); JSON: `macAddress` or `n/a`.
    pub mac_address: String,
    /// INI: `NotToday`; JSON: `tlsPublicCertificate` (or a placeholder, with a warning).
    pub tls_public_certificate: String,
}

/// A media controller (its row in the `FAModules` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaController {
    pub node_id: u32,
    /// Interleave group it belongs to.
    pub ig: u32,
    /// INI: `MemoryBoard/1/MediaController/<k>`; JSON: the absolute coordinate.
    pub coordinate: String,
    /// `(enc-1) << 9 | (node-1) << 4 | (8 + k-1)`.
    pub raw_cid: u32,
    pub module_size_books: u64,
    /// `module_size_books * book_size`.
    pub memory_size: u64,
}

/// A node (its row in the `FRDnodes` table, plus its SOC, MCs and PHYSADDR ranges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 1..=80: `(enc-1)*10 + node`.
    pub node_id: u32,
    /// INI: `1`; JSON: the last element of the rack coordinate (may be a word like `A1.AboveFloor`).
    pub rack: String,
    /// Enclosure 1..=8.
    pub enc: u32,
    /// Node within the enclosure, 1..=10.
    pub node: u32,
    /// INI: `Node/<node>`; JSON: the absolute coordinate.
    pub coordinate: String,
    /// INI: the physical location `1:<enc>:<node>`; JSON: `serialNumber`.
    pub serial_number: String,
    /// INI: the section name (or `nodeNN`); JSON: `soc.hostname` (or `nodeNN`).
    pub hostname: String,
    pub soc: Soc,
    /// LZA only (4 per node from INI); empty in PHYSADDR mode.
    pub media_controllers: Vec<MediaController>,
    /// PHYSADDR only: the node's ranges in file order; empty in LZA mode.
    pub ranges: Vec<PhysRange>,
}

impl Node {
    /// Books this node contributes (MCs in LZA mode, ranges in PHYSADDR mode).
    pub fn books(&self, book_size: u64) -> u64 {
        let mc: u64 = self
            .media_controllers
            .iter()
            .map(|m| m.module_size_books)
            .sum();
        let ranges: u64 = self.ranges.iter().map(|r| r.size / book_size).sum();
        mc + ranges
    }

    /// The default hostname of a node id: `nodeNN`.
    pub fn default_hostname(node_id: u32) -> String {
        format!("node{node_id:02}")
    }

    /// The INI-style node for `node_id` (1..=80): enclosure/node numbers, coordinates, MAC, etc.
    /// MCs and ranges are left empty.
    pub(crate) fn ini_node(node_id: u32, hostname: String) -> Node {
        let n = node_id - 1;
        let node = n % 10 + 1;
        let enc = (n % 80) / 10 + 1;
        Node {
            node_id,
            rack: "1".to_string(),
            enc,
            node,
            coordinate: format!("Node/{node}"),
            serial_number: format!("1:{enc}:{node}"),
            hostname,
            soc: Soc {
                coordinate: "SocBoard/1/Soc/1".to_string(),
                mac_address: format!("52:54:42:{node_id:02}:{node_id:02}:{node_id:02}"),
                tls_public_certificate: "NotToday".to_string(),
            },
            media_controllers: Vec::new(),
            ranges: Vec::new(),
        }
    }
}

/// The raw component id of media controller `k` (1-based) of a node.
pub fn raw_cid(enc: u32, node: u32, k: u32) -> u32 {
    ((enc - 1) << 9) | ((node - 1) << 4) | (8 + k - 1)
}

/// An interleave group (LZA mode): the MCs whose books it spans, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterleaveGroup {
    pub group_id: u32,
    pub media_controllers: Vec<MediaController>,
}

impl InterleaveGroup {
    /// Books in this group: the sum of its MCs' books.
    pub fn total_books(&self) -> u64 {
        self.media_controllers
            .iter()
            .map(|m| m.module_size_books)
            .sum()
    }
}

/// Extra `[global]`/`[enclosureN]` values of an INI file, used only by `-j`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IniExtras {
    pub datacenter: Option<String>,
    pub rack: Option<String>,
    pub domain: Option<String>,
    /// Enclosure number -> rack U position (default `UV`).
    pub enc_u: std::collections::BTreeMap<u32, String>,
}

/// A validated machine topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The file name used in messages (as given by the caller).
    pub source: String,
    pub format: SourceFormat,
    pub book_size: u64,
    pub mode: Mode,
    /// Nodes in file order.
    pub nodes: Vec<Node>,
    /// LZA: the interleave groups in file order (INI: one per node, id = node_id - 1).
    /// PHYSADDR: empty (each node's books use `intlv_group = 65536 | (node_id - 1)`).
    pub interleave_groups: Vec<InterleaveGroup>,
    /// Non-fatal remarks (e.g. TMCF attributes filled in with placeholders).
    pub warnings: Vec<String>,
    pub(crate) ini: Option<IniExtras>,
}

impl Topology {
    /// Reads and validates a topology file: JSON if the text parses as JSON, else INI.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Topology, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::new(&name, "not found (no such file)"));
            }
            Err(e) => {
                return Err(ConfigError::new(
                    &name,
                    format!("cannot read config file: {e}"),
                ))
            }
        };
        if path.is_dir() {
            return Err(ConfigError::new(&name, "is a directory, not a config file"));
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return Err(ConfigError::new(
                    &name,
                    format!(
                        "not a text file: invalid UTF-8 at byte {}",
                        e.utf8_error().valid_up_to()
                    ),
                ))
            }
        };
        Topology::from_str_auto(&name, &text)
    }

    /// Validates `text` as JSON if it parses as JSON, else as INI. `name` is used in messages.
    pub fn from_str_auto(name: &str, text: &str) -> Result<Topology, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => tmcf::from_value(name, &value),
            Err(_) => ini::parse(name, text),
        }
    }

    /// Parses and validates an INI topology. `name` is used in messages.
    pub fn from_ini_str(name: &str, text: &str) -> Result<Topology, ConfigError> {
        ini::parse(name, text)
    }

    /// Parses and validates a TMCF JSON topology. `name` is used in messages.
    pub fn from_json_str(name: &str, text: &str) -> Result<Topology, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => tmcf::from_value(name, &value),
            Err(e) => Err(ConfigError::new(name, format!("not valid JSON: {e}"))),
        }
    }

    /// Total books (rows of the `books` table).
    pub fn books_total(&self) -> u64 {
        self.nodes.iter().map(|n| n.books(self.book_size)).sum()
    }

    /// Total NVM bytes: `books_total * book_size`.
    pub fn nvm_bytes_total(&self) -> u64 {
        self.books_total() * self.book_size
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of distinct `books.intlv_group` values that carry books: interleave groups with
    /// books (LZA) or nodes with ranges (PHYSADDR).
    pub fn intlv_group_count(&self) -> usize {
        match self.mode {
            Mode::Lza => self
                .interleave_groups
                .iter()
                .filter(|g| g.total_books() > 0)
                .count(),
            Mode::PhysAddr => self.nodes.iter().filter(|n| !n.ranges.is_empty()).count(),
        }
    }

    /// A one-line summary: `N nodes, M books of S bytes, mode LZA`.
    pub fn summary(&self) -> String {
        format!(
            "{} node{}, {} book{} of {} bytes ({}), mode {}",
            self.nodes.len(),
            if self.nodes.len() == 1 { "" } else { "s" },
            self.books_total(),
            if self.books_total() == 1 { "" } else { "s" },
            self.book_size,
            format_size(self.book_size),
            self.mode
        )
    }

    /// Creates a new Librarian database at `path` for this topology: all tables
    /// ([`schema::create_empty_db`](lfs_db::create_empty_db)), the `globals` row,
    /// `FRDnodes`, `SOCs`, `FAModules`, every book, and the three initial shelves, in one
    /// transaction. The result is committed, fsynced and left in WAL journal mode.
    ///
    /// The database is built in a temporary file in the same directory and renamed into place
    /// only when complete, so a failure leaves nothing behind. Without `force` an existing file
    /// is never replaced ([`Error::DbExists`]); with `force` it is replaced (together with any
    /// stale `-wal`/`-shm` files). The path `:memory:` builds the database in memory only.
    pub fn create_db(&self, path: impl AsRef<Path>, force: bool) -> Result<DbReport, Error> {
        db::create_db(self, path.as_ref(), force)
    }

    /// The equivalent TMCF JSON document of an INI topology (`book-register -j`), or `None` for
    /// a topology read from JSON.
    pub fn to_tmcf_json(&self) -> Option<String> {
        output::tmcf_json(self)
    }

    /// Human-readable details for `-v` (1: totals and PHYSADDR ranges; 2: also every node, MC
    /// and book), written to `out`.
    pub fn write_verbose(&self, level: u32, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        output::write_verbose(self, level, out)
    }
}

/// A rejected config: one message naming the file, the section/key, the rule and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file name as given.
    pub file: String,
    /// Everything after the file name.
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Any failure of `book-register`'s work: a rejected config or a database that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("database file exists: {}; pass -f to overwrite it", .0.display())]
    DbExists(std::path::PathBuf),
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        what: String,
        source: std::io::Error,
    },
    #[error("{}: database error while {what}: {source}", path.display())]
    Sqlite {
        path: std::path::PathBuf,
        what: String,
        source: rusqlite::Error,
    },
}

pub use lfs_proto::size::{format_size, parse_size, SizeError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_cid_formula() {
        assert_eq!(raw_cid(1, 1, 1), 8);
        assert_eq!(raw_cid(1, 2, 4), (1 << 4) | 11);
        assert_eq!(raw_cid(8, 10, 4), (7 << 9) | (9 << 4) | 11);
    }

    #[test]
    fn ini_node_values() {
        let n = Node::ini_node(80, Node::default_hostname(80));
        assert_eq!((n.enc, n.node), (8, 10));
        assert_eq!(n.coordinate, "Node/10");
        assert_eq!(n.serial_number, "1:8:10");
        assert_eq!(n.soc.mac_address, "52:54:42:80:80:80");
        assert_eq!(n.hostname, "node80");
        let n = Node::ini_node(11, "x".into());
        assert_eq!((n.enc, n.node), (2, 1));
        assert_eq!(n.soc.mac_address, "52:54:42:11:11:11");
    }
}
