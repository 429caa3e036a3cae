//! Runs the real `book-register` binary on every topology config of the project's own corpus
//! (`tests/data/topology/`) and checks the outcome (exit status, message, and the database
//! contents read back with rusqlite).
//!
//! Where the original tm-librarian corpus (`../shared/data/tm-configfiles`) is beside the
//! checkout, the `original_corpus_*` tests cross-check it too; elsewhere they are ignored, with
//! the reason, by `build.rs` (cfg `original_corpus`).

use std::collections::BTreeSet;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::types::FromSql;
use rusqlite::{Connection, Row};

const BIN: &str = env!("CARGO_BIN_EXE_book-register");

/// The project's own topology corpus.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/topology")
}

fn corpus(name: &str) -> PathBuf {
    let p = corpus_dir().join(name);
    assert!(p.is_file(), "{} is missing from the corpus", p.display());
    p
}

/// The original tm-librarian corpus, present on the developers' machines and in CI only.
fn original_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/tm-configfiles")
}

fn original(name: &str) -> PathBuf {
    let dir = original_dir();
    assert!(
        dir.is_dir(),
        "the original corpus was at {} when build.rs ran, but is gone now",
        dir.display()
    );
    dir.join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("cannot run book-register")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a config must produce.
enum Expect {
    Loads {
        mode_physaddr: bool,
        book_size: i64,
        nodes: i64,
        books: i64,
        /// Distinct `books.intlv_group` values; empty: one IG per node, `0..nodes`.
        intlv_groups: &'static [i64],
        /// `FAModules` rows (4 per node from INI in LZA).
        famodules: i64,
    },
    /// Rejected with exit status 1 and a message containing every fragment.
    Rejected(&'static [&'static str]),
}

const K1: i64 = 1 << 10;
const M2: i64 = 2 << 20;
const M4: i64 = 4 << 20;
const M8: i64 = 8 << 20;
const M16: i64 = 16 << 20;
const G1: i64 = 1 << 30;
const G2: i64 = 2 << 30;
const G8: i64 = 8 << 30;

/// The project's corpus: every file of `tests/data/topology/`, good ones first. Each `bad-*`
/// file breaks one rule of the parsers (its first line or `_comment` says which).
fn our_expectations() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    vec![
        // Compact [global] form: 6 nodes x 1G of 4M books = 256 books each; IGs 0..5.
        (
            "compact.ini",
            Loads {
                mode_physaddr: false,
                book_size: M4,
                nodes: 6,
                books: 1536,
                intlv_groups: &[0, 1, 2, 3, 4, 5],
                famodules: 24,
            },
        ),
        // The 80-node maximum (8 enclosures of 10), 8 books of 16M each; upper-case option names.
        (
            "compact-80-nodes.ini",
            Loads {
                mode_physaddr: false,
                book_size: M16,
                nodes: 80,
                books: 640,
                intlv_groups: &[],
                famodules: 320,
            },
        ),
        // One IG at the 8192-book maximum, of the largest (8G) books: 64T.
        (
            "compact-8192-books.ini",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 1,
                books: 8192,
                intlv_groups: &[0],
                famodules: 4,
            },
        ),
        // Compact form with Datacenter/Rack/Domain, [enclosureN] U positions, ":" delimiters and
        // an ignored node section: 12 nodes x 16 books of 2M (the smallest INI book).
        (
            "compact-with-extras.ini",
            Loads {
                mode_physaddr: false,
                book_size: M2,
                nodes: 12,
                books: 192,
                intlv_groups: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                famodules: 48,
            },
        ),
        // Per-node LZA: nodes 3, 14, 27, 40 with 64 + 96 + 32 + 128 books of 1G.
        (
            "per-node.ini",
            Loads {
                mode_physaddr: false,
                book_size: G1,
                nodes: 4,
                books: 320,
                intlv_groups: &[2, 13, 26, 39],
                famodules: 16,
            },
        ),
        // Per-node LZA after [enclosureN] sections: nodes 1, 22, 80 with 16 + 8 + 8 books.
        (
            "enclosures.ini",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 3,
                books: 32,
                intlv_groups: &[0, 21, 79],
                famodules: 12,
            },
        ),
        // PHYSADDR: node02 64 + 32 books, node05 48 + 16 books (empty first line, tabs), node 9
        // without FAM ("0 @ 0x0").
        (
            "physaddr.ini",
            Loads {
                mode_physaddr: true,
                book_size: M4,
                nodes: 3,
                books: 160,
                intlv_groups: &[65537, 65540],
                famodules: 0,
            },
        ),
        // New-style servers: nodes 2, 3 (enclosure 1) and 31, 39 (enclosure 4) of 2G books;
        // IG 40 spans nodes 31 and 39, IG 127 is the largest id.
        (
            "tmcf-servers.json",
            Loads {
                mode_physaddr: false,
                book_size: G2,
                nodes: 4,
                books: 144,
                intlv_groups: &[1, 2, 40, 127],
                famodules: 12,
            },
        ),
        // Old-style managementServer, absolute lower-case coordinates: nodes 1, 2, 5 of 128 books.
        (
            "tmcf-management-server.json",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 3,
                books: 384,
                intlv_groups: &[0, 1, 4],
                famodules: 10,
            },
        ),
        // BOM, 1K books, no optional attributes: node 20 with 2048 + 1024 books.
        (
            "tmcf-minimal.json",
            Loads {
                mode_physaddr: false,
                book_size: K1,
                nodes: 1,
                books: 3072,
                intlv_groups: &[0, 5],
                famodules: 2,
            },
        ),
        // JSON in a .conf file: two racks, nodes 1 and 80, IGs spanning both.
        (
            "tmcf-two-racks.conf",
            Loads {
                mode_physaddr: false,
                book_size: M16,
                nodes: 2,
                books: 32,
                intlv_groups: &[10, 11],
                famodules: 6,
            },
        ),
        // One bad file per rule of the parsers (its first line or _comment says which).
        // The INI reader:
        ("bad-section-header.ini", Rejected(&["line 2: \"[global\": malformed section header, expected [name]"])),
        ("bad-section-name-empty.ini", Rejected(&["line 2: empty section name \"[]\""])),
        ("bad-default-section.ini", Rejected(&["line 2: [DEFAULT] is not supported in a topology", "move its options into [global]"])),
        ("bad-section-duplicate.ini", Rejected(&["line 10: duplicate section [node01] (first defined at line 6)"])),
        ("bad-outside-section.ini", Rejected(&["line 2: \"node_count = 2\" is outside any section", "put it under [global]"])),
        ("bad-no-delimiter.ini", Rejected(&["line 3: [global] \"node_count 2\": expected \"name = value\" (continuation lines must be indented)"])),
        ("bad-option-name-missing.ini", Rejected(&["line 4: [global] \"= 8M\": missing option name before \"=\""])),
        ("bad-option-duplicate.ini", Rejected(&["line 5: [global] option \"book_size_bytes\" given twice (first at line 4); keep one"])),
        ("bad-not-utf8.ini", Rejected(&["not a text file: invalid UTF-8 at byte"])),
        // INI sections and options:
        ("bad-empty.ini", Rejected(&["Missing/invalid/empty config file: no [section] found"])),
        ("bad-global-missing.ini", Rejected(&["Missing [global] section in config file (found [Global] at line 2: section names are case-sensitive)"])),
        ("bad-option-missing.ini", Rejected(&["Missing option(s) in [global]: book_size_bytes (required options are book_size_bytes, node_count)"])),
        ("bad-option-illegal.ini", Rejected(&["Illegal option(s) in [global]: datacentre (line 6)", "did you mean datacentre -> datacenter?"])),
        ("bad-section-unknown.ini", Rejected(&["Missing option(s) in [storage]: node_id, nvm_size", "Illegal option(s) in [storage]: path (line 7)", "[storage] is read as a node section because it is neither [global] nor [enclosureN]"])),
        ("bad-enclosure-u-missing.ini", Rejected(&["Missing option(s) in [enclosure1]: u (required options are u)"])),
        ("bad-value-empty.ini", Rejected(&["[global] node_count is empty (line 3)"])),
        ("bad-value-continuation.ini", Rejected(&["[node01] node_id = 1 / 2: continuation lines are only allowed in nvm_size"])),
        // [global] values:
        ("bad-node-count-range.ini", Rejected(&["[global] node_count = 0: Bad node enumeration value: node_count must be between 1 and 80 (got 0)"])),
        ("bad-node-count-not-integer.ini", Rejected(&["[global] node_count = four: \"four\" is not an integer; give the number of nodes, 1..80"])),
        ("bad-book-size-range.ini", Rejected(&["[global] book_size_bytes = 1M: must be a power of two between 2M and 8G (e.g. 2M, 4M, 8M); 1048576 bytes is out of range [2M, 8G]"])),
        ("bad-book-size-power.ini", Rejected(&["[global] book_size_bytes = 12M:", "12582912 bytes is not a power of 2 (nearest: 8M or 16M)"])),
        ("bad-global-name.ini", Rejected(&["[global] datacenter = north/wing: must not contain \"/\" or spaces (it becomes part of a TMCF coordinate)"])),
        // Sizes (K/M/G/T multipliers, or B for books):
        ("bad-size-empty.ini", Rejected(&["[node01] nvm_size = @ 0x40000000 (line 8): empty value (expected a size such as 8M or 512B)"])),
        ("bad-size-negative.ini", Rejected(&["[global] book_size_bytes = -8M: sizes cannot be negative"])),
        ("bad-size-not-integer.ini", Rejected(&["[global] nvm_size_per_node = 1.5G: \"1.5\" is not an integer (expected digits with an optional K, M, G, T or B suffix)"])),
        ("bad-size-suffix.ini", Rejected(&["[node01] nvm_size = 512X (line 8): unknown size suffix \"X\" (use K, M, G, T for binary bytes, or B for books)"])),
        ("bad-size-books-without-book-size.ini", Rejected(&["[global] book_size_bytes = 4B: multiplier suffix \"B\" (books) is not useable here because the book size is not known yet"])),
        ("bad-size-too-large.ini", Rejected(&["[global] nvm_size_per_node = 99999999999T: value is too large (does not fit in 64 bits)"])),
        // [enclosureN] sections:
        ("bad-enclosure-number.ini", Rejected(&["[enclosure0] bad section: enclosure sections must be named [enclosureN] with N = 1..8"])),
        ("bad-enclosure-duplicate.ini", Rejected(&["[enclosure02] duplicate section: enclosure 2 is already defined"])),
        ("bad-enclosure-after-node.ini", Rejected(&["[enclosure1] must appear before any [node] section (it is at line 10, after [node01] at line 6)"])),
        ("bad-enclosure-u-value.ini", Rejected(&["[enclosure1] u = U/3: Illegal character U-value: it must not contain spaces or \"/\" (e.g. U3)"])),
        // Node counts:
        ("bad-no-nodes.ini", Rejected(&["[global] node_count = 2 but actual count = 0: there is no nvm_size_per_node in [global] and no node section"])),
        ("bad-node-count-mismatch.ini", Rejected(&["[global] node_count = 3 but actual count = 2 (node sections: [node01], [node02]); set node_count = 2"])),
        ("bad-no-nvm.ini", Rejected(&["no node contributes any NVM"])),
        // The compact form:
        ("bad-compact-not-multiple.ini", Rejected(&["[global] nvm_size_per_node = 20M: bytes_per_node not multiple of book size: 20971520 bytes is not a multiple of book_size_bytes 8M; give a book count instead, e.g. 4B"])),
        ("bad-compact-zero-books.ini", Rejected(&["[global] nvm_size_per_node = 0B: book count must be > 0"])),
        ("bad-compact-not-div4.ini", Rejected(&["[global] nvm_size_per_node = 30B: Books per node is not divisible by 4: 30 books cannot be split over 4 media controllers; use a multiple of 4, e.g. 28B"])),
        ("bad-compact-too-many-books.ini", Rejected(&["[global] nvm_size_per_node = 8200B: book count too large: 8200 books per node, at most 8192"])),
        // Node sections:
        ("bad-node-id.ini", Rejected(&["[edge] node_id = 81: bad node id: must be a whole number between 1 and 80"])),
        ("bad-node-id-duplicate.ini", Rejected(&["[beta] node_id = 6: node_id 6 is already used by [alpha]"])),
        ("bad-node-section-name.ini", Rejected(&["[node7] node_id = 7: nodeXX format does not match node_id: name the section [node07]"])),
        ("bad-nvm-size-empty.ini", Rejected(&["[node01] nvm_size is empty (line 8)"])),
        ("bad-nvm-size-syntax.ini", Rejected(&["bad nvm_size syntax: expected \"<size>\" or \"<size> @ 0x<address>\""])),
        ("bad-mixed-modes.ini", Rejected(&["[node02] nvm_size = 8B @ 0x40000000 (line 12): Cannot switch BII mode: [node01] uses LZA (plain sizes) but this line is PHYSADDR (\"size @ 0xADDR\" ranges)"])),
        ("bad-nvm-size-not-multiple.ini", Rejected(&["[node01] nvm_size = 18M (line 8): NVM size is not multiple of book size: 18874368 bytes is not a multiple of 4M; give a book count instead, e.g. 4B"])),
        ("bad-lza-multiple-ranges.ini", Rejected(&["[node01] nvm_size = 8B (line 9): multiple ranges are illegal in MFT (1)"])),
        ("bad-node-zero-books.ini", Rejected(&["[node01] nvm_size = 0 (line 8): book count must be > 0"])),
        ("bad-node-not-div4.ini", Rejected(&["[node01] nvm_size = 10B (line 8): books per node is not divisible by 4: 10 books cannot be split over 4 media controllers; use a multiple of 4, e.g. 8B"])),
        ("bad-node-too-many-books.ini", Rejected(&["[node01] nvm_size = 16T (line 8): book count too large: 16384 books per node, at most 8192"])),
        // Physical-address ranges:
        ("bad-physaddr-zero-books.ini", Rejected(&["[node01] nvm_size = 0 @ 0x40000000 (line 8): book count must be > 0 (use \"0 @ 0x0\" for a node without FAM)"])),
        ("bad-physaddr-below-book-size.ini", Rejected(&["book size 2097152 bigger than address 0x100000"])),
        ("bad-physaddr-unaligned.ini", Rejected(&["address 0x40100000 is not book-aligned: it must be a multiple of the book size 2M (0x200000), e.g. 0x40200000"])),
        ("bad-physaddr-range-end.ini", Rejected(&["U-64 value won't slide into an SQLite signed INT: the range ends beyond 0x7fffffffffffffff"])),
        ("bad-physaddr-no-0x.ini", Rejected(&["address \"40000000\" must start with \"0x\""])),
        ("bad-physaddr-not-hex.ini", Rejected(&["\"0x4000zz00\" is not a valid hex number"])),
        ("bad-physaddr-too-long.ini", Rejected(&["U-64 value won't slide into an SQLite signed INT: address 0x100000000000000000 is beyond 0x7fffffffffffffff"])),
        ("bad-physaddr-beyond-i64.ini", Rejected(&["U-64 value won't slide into an SQLite signed INT: address 0x8000000000000000 is beyond 0x7fffffffffffffff"])),
        ("bad-physaddr-overlap.ini", Rejected(&["[node02] nvm_size: node01 range 0x200000000 collides with node02 range 0x204000000: [0x200000000, 0x208000000) (64 books) overlaps [0x204000000, 0x20c000000) (64 books); physical address ranges must not overlap"])),
        ("bad-physaddr-contains.ini", Rejected(&["node01 range 0x210000000 collides with node02 range 0x200000000: [0x200000000, 0x280000000) (1024 books) contains [0x210000000, 0x210800000) (4 books)"])),
        ("bad-physaddr-overlap-own.ini", Rejected(&["[node01] nvm_size: node01 range 0x200000000 collides with its own range 0x201000000", "overlaps"])),
        // TMCF JSON, the document (text that is not JSON is read as INI):
        ("bad-json-not-object.json", Rejected(&["not a TMCF topology: the JSON document is a list, expected an object with \"coordinate\", \"racks\" and \"interleaveGroups\""])),
        ("bad-json-truncated.json", Rejected(&["line 1: \"{\" is outside any section"])),
        ("bad-json-no-racks.json", Rejected(&["not a TMCF topology: No racks were found (the document has no \"racks\" list)"])),
        ("bad-json-no-coordinate.json", Rejected(&["not a TMCF topology: no top-level \"coordinate\""])),
        ("bad-json-coordinate-type.json", Rejected(&["top-level coordinate = 1: must be a string like \"/MachineVersion/1/Datacenter/<name>\""])),
        // Services and the book size:
        ("bad-json-management-server-type.json", Rejected(&["Illegal configuration cannot be used: managementServer must be an object, not a string"])),
        ("bad-json-management-host-mismatch.json", Rejected(&["Illegal configuration cannot be used: managementServer.monitoringService.restUri = \"https://monitor.quay.example:11000/rest/v1\": managementServer:monitoringService hostname mismatch: \"monitor.quay.example\" but managementServer.librarian uses \"mgmt.quay.example\""])),
        ("bad-json-management-no-host.json", Rejected(&["Illegal configuration cannot be used: Cannot discern managementServer hostname"])),
        ("bad-json-servers-type.json", Rejected(&["Illegal configuration cannot be used: \"servers\" must be a list, not an object"])),
        ("bad-json-server-type.json", Rejected(&["Illegal configuration cannot be used: servers[0] must be an object, not a string"])),
        ("bad-json-services-type.json", Rejected(&["Illegal configuration cannot be used: servers[0].services must be a list, not an object"])),
        ("bad-json-service-type.json", Rejected(&["Illegal configuration cannot be used: servers[0].services[0] must be an object, not a string"])),
        ("bad-json-service-no-name.json", Rejected(&["Illegal configuration cannot be used: servers[0].services[0] has no \"service\" name"])),
        ("bad-json-no-services.json", Rejected(&["Illegal configuration cannot be used: Cannot find any services: add a \"servers\" list"])),
        ("bad-json-no-librarian.json", Rejected(&["Illegal configuration cannot be used: no \"librarian\" service found"])),
        ("bad-json-no-book-size.json", Rejected(&["Illegal configuration cannot be used: servers[0].services[0] (librarian) has no bookSize: add e.g. \"bookSize\": \"8M\""])),
        ("bad-json-book-size-type.json", Rejected(&["Illegal configuration cannot be used: servers[0].services[0].bookSize = true: true is not a size (expected e.g. \"8M\" or 8388608)"])),
        ("bad-json-book-size-float.json", Rejected(&["Illegal configuration cannot be used: servers[0].services[0].bookSize = 16777216.0: 16777216.0 is not a non-negative integer"])),
        ("bad-json-book-size-range.json", Rejected(&["Illegal configuration cannot be used: servers[0].services[0].bookSize = 512: book size must be a power of two between 1K and 8G (e.g. 2M, 4M, 8M); 512 bytes is out of range [1K, 8G]"])),
        ("bad-json-book-size-power.json", Rejected(&["Illegal configuration cannot be used: servers[0].services[0].bookSize = \"24M\": book size must be a power of two", "25165824 bytes is not a power of 2 (nearest: 16M or 32M)"])),
        // Coordinates:
        ("bad-json-machine-version.json", Rejected(&["Illegal configuration cannot be used: Illegal MachineVersion \"/MachineVersion/2/Datacenter/Quay\": the top-level coordinate must start with \"/MachineVersion/1/\""])),
        ("bad-json-coordinate-whitespace.json", Rejected(&["Illegal configuration cannot be used: element coordinate \"SocBoard/1/ Soc/1\" has superfluous whitespace"])),
        ("bad-json-coordinate-slash.json", Rejected(&["Illegal configuration cannot be used: element coordinate \"/SocBoard/1/Soc/1\" has leading or trailing \"/\" (child coordinates are relative to their parent)"])),
        ("bad-json-coordinate-case.json", Rejected(&["Illegal configuration cannot be used: element coordinate \"Socboard/1/Soc/1\" case should be \"SocBoard\" (not \"Socboard\")"])),
        // Racks and enclosures (a skipped element leaves its MCs unknown to the IGs, so
        // several problems are reported):
        ("bad-json-racks-type.json", Rejected(&["\"racks\" must be a list, not an object"])),
        ("bad-json-racks-empty.json", Rejected(&["Illegal configuration cannot be used: Primary /MachineVersion/1/Datacenter/Quay has no racks (2 more problem(s) below)", "\n  IG 0 MC /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/1 not in any node"])),
        ("bad-json-rack-type.json", Rejected(&["Illegal configuration cannot be used: racks[0] must be an object, not a string (2 more problem(s) below)"])),
        ("bad-json-rack-coordinate-type.json", Rejected(&["Illegal configuration cannot be used: racks[0].coordinate = 1: must be a string (2 more problem(s) below)"])),
        ("bad-json-rack-no-coordinate.json", Rejected(&["Illegal configuration cannot be used: racks[0] has no \"coordinate\" (2 more problem(s) below)"])),
        ("bad-json-rack-no-enclosures.json", Rejected(&["Illegal configuration cannot be used: Rack /MachineVersion/1/Datacenter/Quay/Rack/Q1 has no enclosures (2 more problem(s) below)"])),
        ("bad-json-enclosures-type.json", Rejected(&["Illegal configuration cannot be used: Rack /MachineVersion/1/Datacenter/Quay/Rack/Q1: \"enclosures\" must be a list, not an object (2 more problem(s) below)"])),
        ("bad-json-enclosure-duplicate.json", Rejected(&["Illegal configuration cannot be used: Duplicate enclosure coordinate /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1"])),
        ("bad-json-enclosure-number.json", Rejected(&["Illegal configuration cannot be used: Enclosure coordinate \"Enclosure/U9/EncNum/9\": the last element must be the enclosure number 1..8 (e.g. \"Enclosure/U3/EncNum/1\") (2 more problem(s) below)"])),
        ("bad-json-enclosure-no-nodes.json", Rejected(&["Illegal configuration cannot be used: Enclosure /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1 has no nodes (2 more problem(s) below)"])),
        // Nodes:
        ("bad-json-node-duplicate.json", Rejected(&["Illegal configuration cannot be used: Duplicate node coordinate /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1"])),
        ("bad-json-node-number.json", Rejected(&["Illegal configuration cannot be used: Node coordinate \"Node/11\": the last element must be the node number 1..10 (e.g. \"Node/1\") (2 more problem(s) below)"])),
        ("bad-json-node-id-duplicate.json", Rejected(&["Illegal configuration cannot be used: Node /MachineVersion/1/Datacenter/Quay/Rack/Q2/Enclosure/U9/EncNum/1/Node/1: node id 1 (enclosure 1, node 1) is also used by /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1"])),
        ("bad-json-soc-type.json", Rejected(&["Illegal configuration cannot be used: Node /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1: \"soc\" must be an object, not a string (2 more problem(s) below)"])),
        ("bad-json-no-soc.json", Rejected(&["Illegal configuration cannot be used: Node /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1 has no soc (2 more problem(s) below)"])),
        ("bad-json-soc-no-coordinate.json", Rejected(&["Illegal configuration cannot be used: Node /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1: soc has no \"coordinate\" string (e.g. \"SocBoard/1/Soc/1\") (2 more problem(s) below)"])),
        ("bad-json-node-no-media-controllers.json", Rejected(&["Illegal configuration cannot be used: Node /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1 has no mediaControllers (2 more problem(s) below)"])),
        // Media controllers:
        ("bad-json-mc-duplicate.json", Rejected(&["Illegal configuration cannot be used: Duplicate MC coordinate /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/1"])),
        ("bad-json-mc-number.json", Rejected(&["Illegal configuration cannot be used: MC @ /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/9: the last element must be the media controller number 1..8"])),
        ("bad-json-mc-no-memory-size.json", Rejected(&["Illegal configuration cannot be used: MC @ /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/2 has no memorySize (e.g. \"memorySize\": \"1G\")"])),
        ("bad-json-mc-memory-size.json", Rejected(&["Illegal configuration cannot be used: MC @ /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/2: memorySize = \"lots\": \"lots\" is not an integer"])),
        ("bad-json-mc-not-multiple.json", Rejected(&["Illegal configuration cannot be used: MC @ /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/2: memorySize = \"20M\" is not a multiple of the book size 16777216"])),
        ("bad-json-mc-too-much.json", Rejected(&["Illegal configuration cannot be used: MC @ /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/2 has too much NVM: memorySize = \"256G\" is 16384 books, at most 8192"])),
        ("bad-json-mc-unassigned.json", Rejected(&["Inconsistent configuration cannot be used: 5 MC(s) not assigned to an IG: /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/2, /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/3, /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/2/MediaController/4, /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/2/MediaController/5 and 1 more; list every media controller in one \"interleaveGroups\" entry"])),
        ("bad-json-no-nvm.json", Rejected(&["no media controller has any NVM (every memorySize is 0): the Librarian needs at least one book"])),
        // Interleave groups:
        ("bad-json-no-interleave-groups.json", Rejected(&["Illegal configuration cannot be used: Primary /MachineVersion/1/Datacenter/Quay has no interleaveGroups"])),
        ("bad-json-interleave-groups-type.json", Rejected(&["Illegal configuration cannot be used: Primary /MachineVersion/1/Datacenter/Quay: \"interleaveGroups\" must be a list, not an object"])),
        ("bad-json-ig-type.json", Rejected(&["Illegal configuration cannot be used: interleaveGroups[1] must be an object, not a number"])),
        ("bad-json-ig-no-group-id.json", Rejected(&["Illegal configuration cannot be used: interleaveGroups[0] has no groupId"])),
        ("bad-json-ig-group-id.json", Rejected(&["Illegal configuration cannot be used: interleaveGroups[0].groupId = 128: must be an integer 0..127"])),
        ("bad-json-ig-duplicate.json", Rejected(&["Illegal configuration cannot be used: Duplicate interleave group ID 3"])),
        ("bad-json-ig-no-media-controllers.json", Rejected(&["Illegal configuration cannot be used: IG 1", "has no mediaControllers"])),
        ("bad-json-ig-mc-entry-no-coordinate.json", Rejected(&["Illegal configuration cannot be used: IG 0: media controller entry {\"name\":\"MediaController/3\"} has no \"coordinate\" string"])),
        ("bad-json-ig-mc-entry-type.json", Rejected(&["Illegal configuration cannot be used: IG 0: media controller entry 3 must be a coordinate string"])),
        ("bad-json-ig-mc-memory-size.json", Rejected(&["Illegal configuration cannot be used: IG 0 MC /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/2 sets memorySize (only the node's MC entry may)"])),
        ("bad-json-ig-mc-twice.json", Rejected(&["Illegal configuration cannot be used: IG 1 MC /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/2 is already in IG 0: an MC belongs to one interleave group"])),
        ("bad-json-ig-mc-unknown.json", Rejected(&["Illegal configuration cannot be used: IG 0 MC /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/3 not in any node"])),
        ("bad-json-ig-too-many-books.json", Rejected(&["Illegal configuration cannot be used: IG 0 has 16384 books, at most 8192 (13-bit book numbers)"])),
        // Several problems are reported together:
        ("bad-json-several-problems.json", Rejected(&["Illegal configuration cannot be used: Primary coordinate \"/MachineVersion/1/datacenter/Quay\" case should be \"Datacenter\" (not \"datacenter\") (2 more problem(s) below)", "\n  IG 0 MC /MachineVersion/1/Datacenter/Quay/Rack/Q1/Enclosure/U9/EncNum/1/Node/1/MemoryBoard/1/MediaController/1 not in any node", "\n  interleaveGroups[1].groupId = 200: must be an integer 0..127"])),

    ]
}

/// The original tm-librarian corpus (`../shared/data/tm-configfiles`): what each of its 16 files
/// must produce, as a cross-check that this re-creation reads them like the original.
fn original_expectations() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    vec![
        // 40 nodes x 512 books of 8M (compact form).
        (
            "FAME_FRD_max.ini",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 40,
                books: 20480,
                intlv_groups: &[],
                famodules: 160,
            },
        ),
        // Per-node LZA: 512+512+256+256 books of 8G.
        (
            "book_data.ini",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 4,
                books: 1536,
                intlv_groups: &[0, 1, 2, 3],
                famodules: 16,
            },
        ),
        // 80 nodes, 4T per node of 8G books = 512 books each.
        (
            "book_max.ini",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 80,
                books: 40960,
                intlv_groups: &[],
                famodules: 320,
            },
        ),
        (
            "fame_4nodes.ini",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 4,
                books: 2048,
                intlv_groups: &[0, 1, 2, 3],
                famodules: 16,
            },
        ),
        // Nodes 2 and 8 with 128 books each: IGs 1 and 7.
        (
            "ftcbu1.ini",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 2,
                books: 256,
                intlv_groups: &[1, 7],
                famodules: 8,
            },
        ),
        // PHYSADDR: node01 two ranges of 88 books, node04 one range (empty first line + tab).
        (
            "SDFlex_good.ini",
            Loads {
                mode_physaddr: true,
                book_size: 2 << 20,
                nodes: 2,
                books: 264,
                intlv_groups: &[65536, 65539],
                famodules: 0,
            },
        ),
        // Old-style managementServer, 4 nodes x 4 MCs of 1G, IGs 0..3.
        (
            "fame.json",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 4,
                books: 2048,
                intlv_groups: &[0, 1, 2, 3],
                famodules: 16,
            },
        ),
        (
            "fame_80_node.json",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 80,
                books: 40960,
                intlv_groups: &[],
                famodules: 320,
            },
        ),
        // New-style servers; nodes 1-4 and 11-14 with groupIds 1..8.
        (
            "LATEST.json",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 8,
                books: 512,
                intlv_groups: &[1, 2, 3, 4, 5, 6, 7, 8],
                famodules: 32,
            },
        ),
        (
            "sparse2x2.conf",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 4,
                books: 2048,
                intlv_groups: &[1, 2, 21, 22],
                famodules: 16,
            },
        ),
        (
            "sparse2x4.json",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 8,
                books: 4096,
                intlv_groups: &[1, 2, 3, 4, 21, 22, 23, 24],
                famodules: 32,
            },
        ),
        (
            "sparseNode.json",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 8,
                books: 512,
                intlv_groups: &[1, 2, 3, 4, 5, 6, 7, 8],
                famodules: 32,
            },
        ),
        // node01's second range [0xf0010000000, +88 books) overlaps node04's range.
        (
            "SDFlex_bad.ini",
            Rejected(&[
                "SDFlex_bad.ini",
                "[node04] nvm_size",
                "node01 range 0xf0010000000 collides with node04 range 0xf001a000000",
                "must not overlap",
            ]),
        ),
        // Lower-case coordinates: wrong MachineVersion and keyword case.
        (
            "simpleconfig.json",
            Rejected(&[
                "simpleconfig.json",
                "Illegal configuration cannot be used",
                "Illegal MachineVersion \"/machine_rev/1/datacenter/pa1\"",
                "case should be \"Datacenter\"",
                "case should be \"Node\"",
            ]),
        ),
        // Lower-case coordinates and an empty interleaveGroups list.
        (
            "tmcf-bristol.json",
            Rejected(&[
                "tmcf-bristol.json",
                "Illegal MachineVersion \"/machine_version/1/datacenter/br2\"",
                "case should be \"Enclosure\"",
                "has no interleaveGroups",
            ]),
        ),
        // 16 MCs but only node 11's 4 are in an IG.
        (
            "tmcf-drew.json",
            Rejected(&[
                "tmcf-drew.json",
                "Inconsistent configuration cannot be used",
                "12 MC(s) not assigned to an IG",
                "EncNum/1/Node/1/MemoryBoard/1/MediaController/1",
            ]),
        ),
    ]
}

/// Warnings `book-register` must print (on stderr) for a good file of our corpus; every other
/// good file loads without any output on stderr.
fn our_warnings(name: &str) -> &'static [&'static str] {
    match name {
        "compact-with-extras.ini" => {
            &["[node03] ignored: [global] nvm_size_per_node defines all 12 nodes"]
        }
        "tmcf-servers.json" => &["service \"osManifesting\" missing tlsPublicCertificate"],
        "tmcf-management-server.json" => &[
            "SOC coord \"rack.7.enc.1.node.1\" missing hostname",
            "SOC coord \"rack.7.enc.1.node.5\" missing hostname",
        ],
        "tmcf-minimal.json" => &[
            "service \"librarian\" missing tlsPublicCertificate",
            "SOC coord \"rack.1.enc.2.node.10\" missing hostname",
            "node SOC \"rack.1.enc.2.node.10\" missing tlsPublicCertificate",
            "... and 1 more (-v 1 lists them all)",
        ],
        _ => &[],
    }
}

/// The one row that `sql` selects, as a tuple of its first columns.
fn row<T>(conn: &Connection, sql: &str) -> T
where
    T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error>,
{
    conn.query_row(sql, [], |r| T::try_from(r))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The one value (the first column of the one row) that `sql` selects.
fn value<T: FromSql>(conn: &Connection, sql: &str) -> T {
    row::<(T,)>(conn, sql).0
}

/// The one integer that `sql` selects: a count, an id, a size.
fn count(conn: &Connection, sql: &str) -> i64 {
    value(conn, sql)
}

/// The integer that `select` (a column, or an aggregate such as `count(*)`) gives over the
/// `FAModules` rows that match `cond`.
fn famodules(conn: &Connection, select: &str, cond: &str) -> i64 {
    count(
        conn,
        &format!("SELECT {select} FROM FAModules WHERE {cond}"),
    )
}

/// The id of book `book_num` of interleave group `ig`.
fn book_id(conn: &Connection, ig: i64, book_num: i64) -> i64 {
    count(
        conn,
        &format!("SELECT id FROM books WHERE intlv_group = {ig} AND book_num = {book_num}"),
    )
}

/// The highest book number of interleave group `ig`.
fn max_book_num(conn: &Connection, ig: i64) -> i64 {
    count(
        conn,
        &format!("SELECT max(book_num) FROM books WHERE intlv_group = {ig}"),
    )
}

/// The lowest and highest book id of interleave group `ig`.
fn book_ids(conn: &Connection, ig: i64) -> (i64, i64) {
    row(
        conn,
        &format!("SELECT min(id), max(id) FROM books WHERE intlv_group = {ig}"),
    )
}

/// Node `node_id`'s `FRDnodes` row: node_id, rack, enc, node, coordinate, serialNumber.
fn frdnode(conn: &Connection, node_id: i64) -> (i64, i64, i64, i64, String, String) {
    row(
        conn,
        &format!("SELECT * FROM FRDnodes WHERE node_id = {node_id}"),
    )
}

/// Where node `node_id` is (from TMCF): its rack, enclosure, node number and coordinate.
fn place(conn: &Connection, node_id: i64) -> (String, i64, i64, String) {
    row(
        conn,
        &format!("SELECT rack, enc, node, coordinate FROM FRDnodes WHERE node_id = {node_id}"),
    )
}

/// Registers `config` into a new database in `dir`, named after it, which must succeed, and
/// opens the database.
fn register(dir: &Path, config: &Path) -> Connection {
    let name = config.file_name().unwrap().to_string_lossy();
    let db = dir.join(format!("{name}.db"));
    let out = run(&["-d", db.to_str().unwrap(), config.to_str().unwrap()]);
    assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    Connection::open(&db).unwrap()
}

/// Registers every file of `dir` (which must hold exactly the files of `expect`) and checks the
/// outcome. `ours`: also check what only our corpus promises: a rejection is one line naming the
/// file (unless it reports several problems), and a good file prints exactly its warnings.
fn check_corpus(dir: &Path, expect: &[(&'static str, Expect)], ours: bool) {
    let names: BTreeSet<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let known: BTreeSet<String> = expect.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        names, known,
        "the config directory and this test's expectations differ"
    );

    let tmp = tempfile::tempdir().unwrap();
    for (name, exp) in expect {
        let cfile = dir.join(name);
        let db = tmp.path().join(format!("{name}.db"));
        let out = run(&["-d", db.to_str().unwrap(), cfile.to_str().unwrap()]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        match exp {
            Expect::Rejected(parts) => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{name} should be rejected; stdout {stdout}"
                );
                for p in *parts {
                    assert!(stderr.contains(p), "{name}: stderr lacks {p:?}:\n{stderr}");
                }
                assert!(stderr.starts_with("book-register: "), "{name}: {stderr}");
                assert!(
                    !db.exists(),
                    "{name}: a rejected config must not leave a database"
                );
                assert!(!stderr.contains("panicked"), "{name}: {stderr}");
                if ours {
                    assert!(
                        stderr.starts_with(&format!("book-register: {}: ", cfile.display())),
                        "{name}: the message must name the file: {stderr}"
                    );
                    if !parts.iter().any(|p| p.contains("more problem(s) below")) {
                        assert_eq!(
                            stderr.lines().count(),
                            1,
                            "{name} should break exactly one rule: {stderr}"
                        );
                    }
                    assert!(stdout.is_empty(), "{name}: {stdout}");
                }
            }
            Expect::Loads {
                mode_physaddr,
                book_size,
                nodes,
                books,
                intlv_groups,
                famodules,
            } => {
                assert!(out.status.success(), "{name} should load:\n{stderr}");
                assert!(
                    stdout.contains(&format!("{nodes} nodes, {books} books"))
                        || stdout.contains(&format!("{nodes} node, {books} books")),
                    "{name}: {stdout}"
                );
                if ours {
                    let warnings = our_warnings(name);
                    if warnings.is_empty() {
                        assert!(stderr.is_empty(), "{name}: unexpected stderr: {stderr}");
                    }
                    for w in warnings {
                        assert!(
                            stderr.contains(w),
                            "{name}: stderr lacks warning {w:?}:\n{stderr}"
                        );
                    }
                }
                let conn = Connection::open(&db).unwrap();
                let mut want = vec![
                    ("SELECT count(*) FROM globals", 1),
                    ("SELECT book_size_bytes FROM globals", *book_size),
                    ("SELECT books_total FROM globals", *books),
                    ("SELECT nvm_bytes_total FROM globals", books * book_size),
                    ("SELECT nodes_total FROM globals", *nodes),
                    ("SELECT count(*) FROM books", *books),
                    (
                        "SELECT count(*) FROM books WHERE allocated != 0 OR attributes != 0",
                        0,
                    ),
                    ("SELECT count(*) FROM FRDnodes", *nodes),
                    ("SELECT count(*) FROM SOCs", *nodes),
                    ("SELECT count(DISTINCT node_id) FROM FRDnodes", *nodes),
                    ("SELECT count(*) FROM FAModules", *famodules),
                    ("SELECT count(*) FROM shelves", 3),
                    (
                        "SELECT max(intlv_group >> 16) FROM books",
                        i64::from(*mode_physaddr),
                    ),
                ];
                if !mode_physaddr {
                    // LZA ids: (IG << 46) | (book_num << 33); FAModules books match the IG's.
                    want.extend([
                        ("SELECT count(*) FROM books WHERE id != ((intlv_group << 46) | (book_num << 33))", 0),
                        ("SELECT sum(module_size_books) FROM FAModules", *books),
                        ("SELECT count(*) FROM FAModules WHERE memorySize != module_size_books * (SELECT book_size_bytes FROM globals)", 0),
                    ]);
                }
                for (sql, want) in want {
                    assert_eq!(count(&conn, sql), want, "{name}: {sql}");
                }
                let groups: Vec<i64> = conn
                    .prepare("SELECT DISTINCT intlv_group FROM books ORDER BY 1")
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                if intlv_groups.is_empty() {
                    // One IG per node, 0..nodes-1.
                    assert_eq!(groups, (0..*nodes).collect::<Vec<_>>(), "{name}");
                } else {
                    assert_eq!(groups, intlv_groups.to_vec(), "{name}");
                }
                let journal_mode: String = value(&conn, "PRAGMA journal_mode");
                assert_eq!(journal_mode, "wal", "{name}");
            }
        }
    }
}

#[test]
fn every_shipped_config() {
    check_corpus(&corpus_dir(), &our_expectations(), true);
}

/// The cross-check against the original's corpus (see `build.rs`).
#[test]
#[cfg_attr(
    not(original_corpus),
    ignore = "../shared/data/tm-configfiles (the original tm-librarian corpus) is not beside this checkout"
)]
fn original_corpus_every_config() {
    check_corpus(&original_dir(), &original_expectations(), false);
}

/// `build.rs` decides once whether the original corpus is there. It notices the corpus changing
/// or going away, but not one that appears later (cargo can only watch a path that exists
/// without re-running the build script, and so rebuilding this crate, on every build).
#[test]
fn original_corpus_gate_matches_the_disk() {
    assert_eq!(
        cfg!(original_corpus),
        original_dir().is_dir(),
        "build.rs saw the original corpus {} at {} but it is {} now; run `touch topology/build.rs` so it looks again",
        if cfg!(original_corpus) { "present" } else { "absent" },
        original_dir().display(),
        if original_dir().is_dir() { "present" } else { "absent" },
    );
}

#[test]
fn ini_db_values() {
    let tmp = tempfile::tempdir().unwrap();
    let conn = register(tmp.path(), &corpus("per-node.ini"));
    // [ceres] is node 14: enclosure 2, node 4.
    assert_eq!(
        frdnode(&conn, 14),
        (14, 1, 2, 4, "Node/4".into(), "1:2:4".into())
    );
    let mac: String = value(&conn, "SELECT MAC FROM SOCs WHERE node_id = 14");
    assert_eq!(mac, "52:54:42:14:14:14");
    assert_eq!(
        famodules(
            &conn,
            "rawCID",
            "node_id = 14 AND coordinate = 'MemoryBoard/1/MediaController/2'"
        ),
        (1 << 9) | (3 << 4) | 9
    );
    // 96 books over 4 MCs in IG 13 (node_id - 1).
    assert_eq!(
        famodules(
            &conn,
            "count(*)",
            "IG = 13 AND node_id = 14 AND module_size_books = 24"
        ),
        4
    );
    assert_eq!(book_id(&conn, 13, 95), (13 << 46) | (95 << 33));
    assert_eq!(max_book_num(&conn, 39), 127);

    // PHYSADDR: ids are addresses, book_num runs across a node's ranges.
    let conn = register(tmp.path(), &corpus("physaddr.ini"));
    assert_eq!(book_id(&conn, 65537, 64), 0x100040000000);
    assert_eq!(max_book_num(&conn, 65537), 95);
    assert_eq!(
        book_ids(&conn, 65540),
        (0x1000c0000000, 0x100100000000 + 15 * (4 << 20))
    );
    // The partition without FAM is a node with no books.
    assert_eq!(
        count(&conn, "SELECT count(*) FROM FRDnodes WHERE node_id = 9"),
        1
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM books WHERE intlv_group = 65536 + 8"
        ),
        0
    );
}

#[test]
fn json_db_values() {
    let tmp = tempfile::tempdir().unwrap();
    let conn = register(tmp.path(), &corpus("tmcf-servers.json"));
    assert_eq!(
        place(&conn, 39),
        (
            "R3".into(),
            4,
            9,
            "/MachineVersion/1/Datacenter/Harbor9/Rack/R3/Enclosure/U17/EncNum/4/Node/9".into()
        )
    );
    let (mac, soc): (String, String) =
        row(&conn, "SELECT MAC, coordinate FROM SOCs WHERE node_id = 39");
    assert_eq!(mac, "0a:09:00:04:09:00");
    assert!(soc.ends_with("/EncNum/4/Node/9/SocBoard/1/Soc/1"), "{soc}");
    // groupId 40 interleaves node 31's MCs 5-6 (8 books each) with node 39's MCs 1-2 (4 each).
    assert_eq!(
        famodules(
            &conn,
            "count(*)",
            "IG = 40 AND node_id = 39 AND module_size_books = 4"
        ),
        2
    );
    assert_eq!(
        famodules(
            &conn,
            "count(*)",
            "IG = 40 AND node_id = 31 AND module_size_books = 8"
        ),
        2
    );
    assert_eq!(
        famodules(
            &conn,
            "rawCID",
            "node_id = 31 AND coordinate LIKE '%MediaController/6'"
        ),
        (3 << 9) | 13
    );
    assert_eq!(max_book_num(&conn, 40), 23);
    assert_eq!(max_book_num(&conn, 127), 7);
    // An integer memorySize (32G) counts like a string one.
    assert_eq!(
        famodules(
            &conn,
            "module_size_books",
            "node_id = 3 AND coordinate LIKE '%MediaController/2'"
        ),
        16
    );

    // A numeric rack name is stored as an integer (INT affinity), serial numbers as text; a
    // serial number that is a number loses its leading zeros, as in the original.
    let conn = register(tmp.path(), &corpus("tmcf-management-server.json"));
    let (rack, serial): (i64, String) = row(
        &conn,
        "SELECT rack, serialNumber FROM FRDnodes WHERE node_id = 2",
    );
    assert_eq!((rack, serial.as_str()), (7, "1002"));
    let serial: String = value(&conn, "SELECT serialNumber FROM FRDnodes WHERE node_id = 5");
    assert_eq!(serial, "555");

    // Missing attributes get defaults.
    let conn = register(tmp.path(), &corpus("tmcf-minimal.json"));
    let (mac, cert): (String, String) = row(
        &conn,
        "SELECT MAC, tlsPublicCertificate FROM SOCs WHERE node_id = 20",
    );
    assert_eq!(mac, "n/a");
    assert!(cert.contains("You forgot an attribute"), "{cert}");
    assert_eq!(
        famodules(&conn, "rawCID", "IG = 5"),
        (1 << 9) | (9 << 4) | 15
    );
}

#[test]
fn validate_only_without_d() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg(corpus("compact.ini"))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("valid: 6 nodes, 1536 books of 4194304 bytes (4M), mode LZA"),
        "{stdout}"
    );
    assert!(stdout.contains("pass -d"), "{stdout}");
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing may be written"
    );
}

#[test]
fn refuses_existing_db_without_f() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("lib.db");
    let cfg = corpus("compact.ini");
    fs::write(&db, b"keep me").unwrap();
    let out = run(&["-d", db.to_str().unwrap(), cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("database file exists") && err.contains("lib.db") && err.contains("-f"),
        "{err}"
    );
    assert_eq!(fs::read(&db).unwrap(), b"keep me");

    let out = run(&["-f", "-d", db.to_str().unwrap(), cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conn = Connection::open(&db).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM books"), 1536);
    drop(conn);

    // Re-registering over a good database with a bad config keeps the old one.
    let out = run(&[
        "-f",
        "-d",
        db.to_str().unwrap(),
        corpus("bad-physaddr-overlap.ini").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let conn = Connection::open(&db).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM books"), 1536);
    let names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(names.is_empty(), "leftover temp files: {names:?}");
}

#[test]
fn json_output_for_ini() {
    let out = run(&["-j", corpus("compact-with-extras.ini").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout must be only JSON");
    assert_eq!(v["servers"][0]["services"][0]["service"], "librarian");
    assert_eq!(v["servers"][0]["services"][0]["bookSize"], 2 << 20);
    assert_eq!(v["servers"][0]["services"][0]["port"], 9093);
    assert_eq!(v["interleaveGroups"].as_array().unwrap().len(), 12);
    // [global] Datacenter, Rack and Domain; [enclosureN] U positions.
    assert_eq!(v["coordinate"], "/MachineVersion/1/Datacenter/eastbank");
    assert_eq!(v["servers"][0]["ipv4Address"], "torms.cluster.example.com");
    assert_eq!(v["racks"][0]["coordinate"], "Rack/e04");
    let encs = v["racks"][0]["enclosures"].as_array().unwrap();
    assert_eq!(encs.len(), 2);
    assert_eq!(encs[0]["coordinate"], "Enclosure/U11/EncNum/1");
    assert_eq!(encs[1]["coordinate"], "Enclosure/U21/EncNum/2");
    assert_eq!(encs[0]["nodes"].as_array().unwrap().len(), 10);
    assert_eq!(encs[1]["nodes"].as_array().unwrap().len(), 2);
    assert!(encs[0].get("iZoneBoards").is_some());
    assert!(encs[0]["nodes"][0].get("nodeMp").is_some());
    // The summary went to stderr.
    assert!(text(&out.stderr).contains("valid: 12 nodes"));

    // The generated document registers to the same books.
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("extras.json");
    fs::write(&json, &out.stdout).unwrap();
    let conn = register(tmp.path(), &json);
    assert_eq!(count(&conn, "SELECT count(*) FROM books"), 192);
    assert_eq!(
        count(&conn, "SELECT count(DISTINCT intlv_group) FROM books"),
        12
    );

    // Enclosures without a node are left out; the others keep their U positions.
    let out = run(&["-j", corpus("enclosures.ini").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let encs: Vec<&str> = v["racks"][0]["enclosures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["coordinate"].as_str().unwrap())
        .collect();
    assert_eq!(
        encs,
        [
            "Enclosure/U2/EncNum/1",
            "Enclosure/U14/EncNum/3",
            "Enclosure/U38/EncNum/8"
        ]
    );

    // PHYSADDR: no nodeMp or iZoneBoards.
    let out = run(&["-j", corpus("physaddr.ini").to_str().unwrap()]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let enc = &v["racks"][0]["enclosures"][0];
    assert!(enc.get("iZoneBoards").is_none());
    assert!(enc["nodes"][0].get("nodeMp").is_none());
    assert_eq!(v["coordinate"], "/MachineVersion/1/Datacenter/tidewater");
    assert_eq!(v["servers"][0]["ipv4Address"], "torms.hpc.example.org");

    // -j is ignored for JSON input.
    let out = run(&["-j", corpus("tmcf-servers.json").to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("-j only applies to INI"));
}

#[test]
fn verbose_prints_phase_times() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("v.db");
    let out = run(&[
        "-v",
        "1",
        "-d",
        db.to_str().unwrap(),
        corpus("physaddr.ini").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for p in [
        "time: parse+validate",
        "books",
        "commit",
        "install",
        "total",
        "[node02]",
        "0x0000100000000000 -> ",
        "[node05]",
        "0x0000100100000000 -> 0x0000100103ffffff",
        "[compute9]",
    ] {
        assert!(stdout.contains(p), "verbose output lacks {p:?}:\n{stdout}");
    }
}

/// The database values the original corpus gives, as the original gives them.
#[test]
#[cfg_attr(
    not(original_corpus),
    ignore = "../shared/data/tm-configfiles (the original tm-librarian corpus) is not beside this checkout"
)]
fn original_corpus_db_values() {
    let tmp = tempfile::tempdir().unwrap();
    let conn = register(tmp.path(), &original("ftcbu1.ini"));
    assert_eq!(
        frdnode(&conn, 8),
        (8, 1, 1, 8, "Node/8".into(), "1:1:8".into())
    );
    let mac: String = value(&conn, "SELECT MAC FROM SOCs WHERE node_id = 8");
    assert_eq!(mac, "52:54:42:08:08:08");
    assert_eq!(
        famodules(
            &conn,
            "rawCID",
            "node_id = 8 AND coordinate = 'MemoryBoard/1/MediaController/2'"
        ),
        (7 << 4) | 9
    );
    assert_eq!(
        famodules(&conn, "count(*)", "IG = 7 AND module_size_books = 32"),
        4
    );
    assert_eq!(book_id(&conn, 7, 127), (7 << 46) | (127 << 33));

    // PHYSADDR: ids are addresses, book_num runs across a node's ranges.
    let conn = register(tmp.path(), &original("SDFlex_good.ini"));
    assert_eq!(book_id(&conn, 65536, 88), 0xf00100000000);
    assert_eq!(max_book_num(&conn, 65536), 175);
    assert_eq!(
        book_ids(&conn, 65539),
        (0xf001a0000000, 0xf001a0000000 + 87 * (2 << 20))
    );

    let conn = register(tmp.path(), &original("LATEST.json"));
    assert_eq!(
        place(&conn, 12),
        (
            "A1.AboveFloor".into(),
            2,
            2,
            "/MachineVersion/1/Datacenter/BUK1/Rack/A1.AboveFloor/Enclosure/U8/EncNum/2/Node/2"
                .into()
        )
    );
    let (mac, soc): (String, String) =
        row(&conn, "SELECT MAC, coordinate FROM SOCs WHERE node_id = 12");
    assert_eq!(mac, "00:00:00:00:02:02");
    assert!(soc.ends_with("/EncNum/2/Node/2/SocBoard/1/Soc/1"), "{soc}");
    // groupId 6 holds node 12's MCs (16 books each).
    assert_eq!(
        famodules(
            &conn,
            "count(*)",
            "IG = 6 AND node_id = 12 AND module_size_books = 16"
        ),
        4
    );
    assert_eq!(
        famodules(
            &conn,
            "rawCID",
            "node_id = 12 AND coordinate LIKE '%MediaController/3'"
        ),
        (1 << 9) | (1 << 4) | 10
    );
    assert_eq!(max_book_num(&conn, 6), 63);

    // A numeric rack name is stored as an integer (INT affinity), serial numbers as text.
    let conn = register(tmp.path(), &original("fame.json"));
    let (rack, serial): (i64, String) = row(
        &conn,
        "SELECT rack, serialNumber FROM FRDnodes WHERE node_id = 2",
    );
    assert_eq!((rack, serial.as_str()), (1, "22222"));
}

#[test]
fn bad_invocations() {
    let out = run(&["/nonexistent/x.ini"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("\"/nonexistent/x.ini\" not found"));

    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("empty.ini", "", "empty config file"),
        ("garbage.ini", "\u{1}\u{2} nonsense", "outside any section"),
        ("bytes.ini", "[global]\nnode_count = 4\nbook_size_bytes = 8M\nbytes_per_node = 512B\n", "Illegal option(s) in [global]: bytes_per_node"),
        ("size.ini", "[global]\nnode_count = 4\nbook_size_bytes = 3M\nnvm_size_per_node = 8B\n", "size.ini: [global] book_size_bytes = 3M: must be a power of two between 2M and 8G (e.g. 2M, 4M, 8M)"),
        ("nodes.ini", "[global]\nnode_count = 81\nbook_size_bytes = 8M\nnvm_size_per_node = 8B\n", "node_count = 81"),
        ("arr.json", "[1, 2, 3]", "not a TMCF topology"),
    ];
    for (name, body, want) in cases {
        let p = tmp.path().join(name);
        fs::write(&p, body).unwrap();
        let out = run(&[p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(
            err.lines().count(),
            1,
            "{name}: one message expected: {err}"
        );
        assert!(out.stdout.is_empty(), "{name}");
    }
    // Binary junk is rejected, not a crash.
    let p = tmp.path().join("junk.bin");
    fs::write(&p, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let out = run(&[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a text file"));
}

/// The line of `b` that holds `pos`, with its newline if it has one.
fn line_at(b: &[u8], pos: usize) -> Range<usize> {
    let start = b[..pos]
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |i| i + 1);
    let end = b[pos..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |i| pos + i + 1);
    start..end
}

/// Mutated versions of every config of `dir` must give a result or an error, never a panic, and
/// whatever is accepted must also build a database.
fn no_panics_on_mutations_of(dir: &Path) {
    use lfs_topology::Topology;

    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const SPECIAL: &[u8] = b"[]=:@#; \t\n0123456789xXbBkKmMgGtT-{}\",/.";
    let mut accepted = 0;
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let original = fs::read(&path).unwrap();
        for round in 0..150 {
            let mut b = original.clone();
            for _ in 0..1 + next() % 3 {
                if b.is_empty() {
                    break;
                }
                let pos = (next() % b.len() as u64) as usize;
                let ch = SPECIAL[(next() % SPECIAL.len() as u64) as usize];
                match next() % 5 {
                    0 => b[pos] = ch,
                    1 => b.truncate(pos),
                    2 => b.insert(pos, ch),
                    3 => {
                        // Delete the line containing pos.
                        b.drain(line_at(&b, pos));
                    }
                    _ => {
                        // Duplicate the line containing pos.
                        let line = line_at(&b, pos);
                        let copy = b[line.clone()].to_vec();
                        b.splice(line.end..line.end, copy);
                    }
                }
            }
            let text = String::from_utf8_lossy(&b).into_owned();
            let name = format!("{}#{round}", path.display());
            let result = std::panic::catch_unwind(|| Topology::from_str_auto(&name, &text));
            let Ok(result) = result else {
                panic!("panic on mutated {name}:\n{text}");
            };
            match result {
                Ok(t) => {
                    accepted += 1;
                    assert!(t.books_total() > 0, "{name}");
                    if t.books_total() <= 4096 {
                        let r = t.create_db(":memory:", false);
                        assert!(
                            r.is_ok(),
                            "{name}: accepted but the DB failed: {:?}\n{text}",
                            r.err()
                        );
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with(&name), "{msg}");
                }
            }
        }
    }
    assert!(
        accepted > 0,
        "no mutation was accepted at all; the test is not exercising much"
    );
}

#[test]
fn no_panics_on_mutated_configs() {
    no_panics_on_mutations_of(&corpus_dir());
}

#[test]
#[cfg_attr(
    not(original_corpus),
    ignore = "../shared/data/tm-configfiles (the original tm-librarian corpus) is not beside this checkout"
)]
fn original_corpus_no_panics_on_mutated_configs() {
    no_panics_on_mutations_of(&original_dir());
}
