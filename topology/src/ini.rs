//! INI topologies: a configparser-compatible reader and the three forms of `book_register.py`.
//!
//! * Form A, compact FAME/MFT: `[global]` has `nvm_size_per_node`; nodes 1..node_count.
//! * Form B, per-node LZA: `[hostname]` sections with `node_id` and `nvm_size = <size>`.
//! * Form C, per-node PHYSADDR: `nvm_size = <size> @ 0x<addr>`, several ranges as indented
//!   continuation lines (possibly after an empty first line).
//!
//! Reader semantics follow Python's `configparser` defaults: `=` or `:` delimiters, option names
//! lowercased, full-line `#`/`;` comments, continuation lines indented deeper than their option
//! line, blank lines inside a multi-line value ignored. In addition, a `#` or `;` preceded by
//! whitespace starts an inline comment.

use std::collections::{BTreeMap, HashMap};

use super::{
    format_size, parse_size, raw_cid, ConfigError, IniExtras, InterleaveGroup, MediaController,
    Mode, Node, PhysRange, SourceFormat, Topology, MAX_BOOKS_PER_IG, MAX_BOOK_SIZE, MAX_ENCLOSURE,
    MAX_NODE_ID, MAX_PHYSADDR, MIN_BOOK_SIZE,
};

/// One option with its value lines (first line, then continuation lines), all trimmed.
#[derive(Debug, Clone)]
pub(crate) struct IniOption {
    pub key: String,
    pub line: usize,
    /// `(line number, text)`; the first entry is the text after the delimiter (may be empty).
    pub values: Vec<(usize, String)>,
}

impl IniOption {
    /// The value lines that are not empty.
    fn lines(&self) -> impl Iterator<Item = &(usize, String)> {
        self.values.iter().filter(|(_, v)| !v.is_empty())
    }

    /// The value for messages: lines joined with `\n` shown as ` / `.
    fn shown(&self) -> String {
        let parts: Vec<&str> = self.lines().map(|(_, v)| v.as_str()).collect();
        parts.join(" / ")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct IniSection {
    pub name: String,
    pub line: usize,
    pub options: Vec<IniOption>,
}

impl IniSection {
    fn get(&self, key: &str) -> Option<&IniOption> {
        self.options.iter().find(|o| o.key == key)
    }
}

/// Reads INI text into sections, in file order.
pub(crate) fn read_ini(file: &str, text: &str) -> Result<Vec<IniSection>, ConfigError> {
    let err = |line: usize, msg: String| ConfigError::new(file, format!("line {line}: {msg}"));
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections: Vec<IniSection> = Vec::new();
    // Indentation of the current option's line, while continuation lines may follow it.
    let mut open_option: Option<usize> = None;
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
        let value = strip_comment(raw).trim();
        if value.is_empty() {
            // Blank and comment lines neither end a multi-line value nor add to it.
            continue;
        }
        if let Some(opt_indent) = open_option {
            if indent > opt_indent {
                if let Some(opt) = sections.last_mut().and_then(|s| s.options.last_mut()) {
                    opt.values.push((lineno, value.to_string()));
                }
                continue;
            }
        }
        open_option = None;
        if let Some(rest) = value.strip_prefix('[') {
            let Some(inner) = rest.strip_suffix(']') else {
                return Err(err(
                    lineno,
                    format!("\"{value}\": malformed section header, expected [name]"),
                ));
            };
            let name = inner.trim();
            if name.is_empty() {
                return Err(err(lineno, "empty section name \"[]\"".to_string()));
            }
            if name == "DEFAULT" {
                return Err(err(
                    lineno,
                    "[DEFAULT] is not supported in a topology (its options would apply to every section); move its options into [global]".to_string(),
                ));
            }
            if let Some(prev) = sections.iter().find(|s| s.name == name) {
                return Err(err(
                    lineno,
                    format!(
                        "duplicate section [{name}] (first defined at line {}); merge them or rename one",
                        prev.line
                    ),
                ));
            }
            sections.push(IniSection {
                name: name.to_string(),
                line: lineno,
                options: Vec::new(),
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            return Err(err(
                lineno,
                format!("\"{value}\" is outside any section (file contains no section headers); put it under [global]"),
            ));
        };
        let Some(pos) = value.find(['=', ':']) else {
            return Err(err(
                lineno,
                format!(
                    "[{}] \"{value}\": expected \"name = value\" (continuation lines must be indented)",
                    section.name
                ),
            ));
        };
        let key = value[..pos].trim().to_lowercase();
        if key.is_empty() {
            return Err(err(
                lineno,
                format!(
                    "[{}] \"{value}\": missing option name before \"{}\"",
                    section.name,
                    &value[pos..=pos]
                ),
            ));
        }
        if let Some(prev) = section.options.iter().find(|o| o.key == key) {
            return Err(err(
                lineno,
                format!(
                    "[{}] option \"{key}\" given twice (first at line {}); keep one",
                    section.name, prev.line
                ),
            ));
        }
        section.options.push(IniOption {
            key,
            line: lineno,
            values: vec![(lineno, value[pos + 1..].trim().to_string())],
        });
        open_option = Some(indent);
    }
    Ok(sections)
}

/// Cuts a line at a `#` or `;` that starts the line's text or follows whitespace.
fn strip_comment(line: &str) -> &str {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if (c == '#' || c == ';') && prev_space {
            return &line[..i];
        }
        prev_space = c.is_whitespace();
    }
    line
}

const GLOBAL: &str = "global";
const GLOBAL_LEGAL: &[&str] = &[
    "book_size_bytes",
    "node_count",
    "nvm_size_per_node",
    "datacenter",
    "rack",
    "domain",
];
const GLOBAL_REQUIRED: &[&str] = &["book_size_bytes", "node_count"];
const ENCLOSURE_LEGAL: &[&str] = &["u"];
const NODE_LEGAL: &[&str] = &["node_id", "nvm_size"];

fn is_enclosure(name: &str) -> bool {
    name.starts_with("enclosure")
}

/// Missing and illegal options of one section, as one message.
fn check_options(sec: &IniSection) -> Result<(), String> {
    let (legal, required): (&[&str], &[&str]) = if sec.name == GLOBAL {
        (GLOBAL_LEGAL, GLOBAL_REQUIRED)
    } else if is_enclosure(&sec.name) {
        (ENCLOSURE_LEGAL, ENCLOSURE_LEGAL)
    } else {
        (NODE_LEGAL, NODE_LEGAL)
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|r| sec.get(r).is_none())
        .collect();
    let illegal: Vec<&IniOption> = sec
        .options
        .iter()
        .filter(|o| !legal.contains(&o.key.as_str()))
        .collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "Missing option(s) in [{}]: {} (required options are {})",
            sec.name,
            missing.join(", "),
            required.join(", ")
        ));
    }
    if !illegal.is_empty() {
        let names: Vec<String> = illegal
            .iter()
            .map(|o| format!("{} (line {})", o.key, o.line))
            .collect();
        let mut msg = format!(
            "Illegal option(s) in [{}]: {} (legal options are {})",
            sec.name,
            names.join(", "),
            legal.join(", ")
        );
        let hints: Vec<String> = illegal
            .iter()
            .filter_map(|o| suggest(&o.key, legal).map(|s| format!("{} -> {s}", o.key)))
            .collect();
        if !hints.is_empty() {
            msg.push_str(&format!("; did you mean {}?", hints.join(", ")));
        }
        if sec.name != GLOBAL && !is_enclosure(&sec.name) && sec.get("node_id").is_none() {
            msg.push_str(&format!(
                "; note: [{}] is read as a node section because it is neither [global] nor [enclosureN]",
                sec.name
            ));
        }
        parts.push(msg);
    }
    if parts.is_empty() {
        Ok(())
    } else {
        Err(parts.join("; "))
    }
}

/// A legal option name close to a misspelt one.
fn suggest(bad: &str, legal: &[&str]) -> Option<String> {
    if bad == "bytes_per_node" {
        return legal
            .contains(&"nvm_size_per_node")
            .then(|| "nvm_size_per_node".to_string());
    }
    legal
        .iter()
        .map(|l| (edit_distance(bad, l), *l))
        .filter(|(d, l)| *d <= 3.min(l.len() / 2))
        .min()
        .map(|(_, l)| l.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A single-line option value (continuation lines are an error).
fn single<'a>(sec: &IniSection, opt: &'a IniOption) -> Result<&'a str, String> {
    let lines: Vec<&(usize, String)> = opt.lines().collect();
    match lines.as_slice() {
        [] => Err(format!(
            "[{}] {} is empty (line {})",
            sec.name, opt.key, opt.line
        )),
        [(_, v)] => Ok(v.as_str()),
        _ => Err(format!(
            "[{}] {} = {}: continuation lines are only allowed in nvm_size",
            sec.name,
            opt.key,
            opt.shown()
        )),
    }
}

fn parse_plain_int(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Validates a book size (both INI and JSON share the power-of-two rule).
pub(crate) fn check_book_size(bytes: u64, min: u64) -> Result<(), String> {
    let rule = format!(
        "must be a power of two between {} and {} (e.g. 2M, 4M, 8M)",
        format_size(min),
        format_size(MAX_BOOK_SIZE)
    );
    if !(min..=MAX_BOOK_SIZE).contains(&bytes) {
        return Err(format!(
            "{rule}; {bytes} bytes is out of range [{}, {}]",
            format_size(min),
            format_size(MAX_BOOK_SIZE)
        ));
    }
    if !bytes.is_power_of_two() {
        let lower = 1u64 << (63 - bytes.leading_zeros());
        return Err(format!(
            "{rule}; {bytes} bytes is not a power of 2 (nearest: {} or {})",
            format_size(lower),
            format_size(lower << 1)
        ));
    }
    Ok(())
}

/// The four auto-generated media controllers of an LZA node (IG = node_id - 1).
fn auto_mcs(node: &Node, books: u64, book_size: u64) -> Vec<MediaController> {
    let per_mc = books / 4;
    (1..=4)
        .map(|k| MediaController {
            node_id: node.node_id,
            ig: node.node_id - 1,
            coordinate: format!("MemoryBoard/1/MediaController/{k}"),
            raw_cid: raw_cid(node.enc, node.node, k),
            module_size_books: per_mc,
            memory_size: per_mc * book_size,
        })
        .collect()
}

/// Parses and validates an INI topology.
pub(crate) fn parse(file: &str, text: &str) -> Result<Topology, ConfigError> {
    let fail = |msg: String| ConfigError::new(file, msg);
    let sections = read_ini(file, text)?;
    if sections.is_empty() {
        return Err(fail(
            "Missing/invalid/empty config file: no [section] found; an INI topology needs a [global] section with node_count and book_size_bytes".to_string(),
        ));
    }
    let Some(g) = sections.iter().find(|s| s.name == GLOBAL) else {
        let hint = sections
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(GLOBAL))
            .map(|s| {
                format!(
                    " (found [{}] at line {}: section names are case-sensitive)",
                    s.name, s.line
                )
            })
            .unwrap_or_default();
        return Err(fail(format!(
            "Missing [global] section in config file{hint}; it needs book_size_bytes and node_count"
        )));
    };
    for sec in &sections {
        check_options(sec).map_err(&fail)?;
    }
    // Both are present: check_options passed.
    let value_of = |key: &str| -> Result<(String, &IniOption), String> {
        let opt = g
            .get(key)
            .ok_or_else(|| format!("Missing option(s) in [global]: {key}"))?;
        Ok((single(g, opt)?.to_string(), opt))
    };

    let (nc_raw, _) = value_of("node_count").map_err(&fail)?;
    let node_count = match parse_plain_int(&nc_raw) {
        Some(n) if (1..=u64::from(MAX_NODE_ID)).contains(&n) => n as u32,
        Some(n) => {
            return Err(fail(format!(
                "[global] node_count = {nc_raw}: Bad node enumeration value: node_count must be between 1 and {MAX_NODE_ID} (got {n})"
            )))
        }
        None => {
            return Err(fail(format!(
                "[global] node_count = {nc_raw}: \"{nc_raw}\" is not an integer; give the number of nodes, 1..{MAX_NODE_ID}"
            )))
        }
    };

    let (bs_raw, _) = value_of("book_size_bytes").map_err(&fail)?;
    let book_size = parse_size(&bs_raw, None)
        .map_err(|e| fail(format!("[global] book_size_bytes = {bs_raw}: {e}")))?;
    check_book_size(book_size, MIN_BOOK_SIZE)
        .map_err(|e| fail(format!("[global] book_size_bytes = {bs_raw}: {e}")))?;

    let mut extras = IniExtras::default();
    for (key, slot) in [
        ("datacenter", &mut extras.datacenter),
        ("rack", &mut extras.rack),
        ("domain", &mut extras.domain),
    ] {
        if let Some(opt) = g.get(key) {
            let v = single(g, opt).map_err(&fail)?;
            if v.contains('/') || v.chars().any(char::is_whitespace) {
                return Err(fail(format!(
                    "[global] {key} = {v}: must not contain \"/\" or spaces (it becomes part of a TMCF coordinate)"
                )));
            }
            *slot = Some(v.to_string());
        }
    }

    let compact = g.get("nvm_size_per_node").is_some();
    let first_node = sections
        .iter()
        .find(|s| s.name != GLOBAL && !is_enclosure(&s.name));

    // [enclosureN] sections: U positions (only used by -j).
    for sec in sections.iter().filter(|s| is_enclosure(&s.name)) {
        let errname = format!("[{}]", sec.name);
        let num = match sec.name["enclosure".len()..].parse::<u32>() {
            Ok(n) if (1..=MAX_ENCLOSURE).contains(&n) => n,
            _ => {
                return Err(fail(format!(
                    "{errname} bad section: enclosure sections must be named [enclosureN] with N = 1..{MAX_ENCLOSURE}"
                )))
            }
        };
        if extras.enc_u.contains_key(&num) {
            return Err(fail(format!(
                "{errname} duplicate section: enclosure {num} is already defined"
            )));
        }
        if !compact {
            if let Some(n) = first_node.filter(|n| n.line < sec.line) {
                return Err(fail(format!(
                    "{errname} must appear before any [node] section (it is at line {}, after [{}] at line {})",
                    sec.line, n.name, n.line
                )));
            }
        }
        let opt = sec
            .get("u")
            .ok_or_else(|| fail(format!("Missing option(s) in {errname}: u")))?;
        let u = single(sec, opt).map_err(&fail)?;
        if u.contains(' ') || u.contains('/') || u.chars().any(char::is_whitespace) {
            return Err(fail(format!(
                "{errname} u = {u}: Illegal character U-value: it must not contain spaces or \"/\" (e.g. U3)"
            )));
        }
        extras.enc_u.insert(num, u.to_string());
    }

    let mut warnings = Vec::new();
    let (mode, nodes) = if compact {
        for sec in sections
            .iter()
            .filter(|s| s.name != GLOBAL && !is_enclosure(&s.name))
        {
            warnings.push(format!(
                "[{}] ignored: [global] nvm_size_per_node defines all {node_count} nodes",
                sec.name
            ));
        }
        (
            Mode::Lza,
            compact_nodes(g, node_count, book_size).map_err(&fail)?,
        )
    } else {
        let node_sections: Vec<&IniSection> = sections
            .iter()
            .filter(|s| s.name != GLOBAL && !is_enclosure(&s.name))
            .collect();
        if node_sections.is_empty() {
            return Err(fail(format!(
                "[global] node_count = {node_count} but actual count = 0: there is no nvm_size_per_node in [global] and no node section; add nvm_size_per_node = <size> to [global] (compact FAME form, e.g. nvm_size_per_node = 512B) or one [nodeXX] section with node_id and nvm_size per node"
            )));
        }
        let (mode, nodes) = section_nodes(&node_sections, book_size).map_err(&fail)?;
        if nodes.len() != node_count as usize {
            let names: Vec<String> = node_sections
                .iter()
                .map(|s| format!("[{}]", s.name))
                .collect();
            return Err(fail(format!(
                "[global] node_count = {node_count} but actual count = {} (node sections: {}); set node_count = {} or add/remove node sections",
                nodes.len(),
                names.join(", "),
                nodes.len()
            )));
        }
        (mode, nodes)
    };

    let interleave_groups = match mode {
        Mode::Lza => nodes
            .iter()
            .map(|n| InterleaveGroup {
                group_id: n.node_id - 1,
                media_controllers: n.media_controllers.clone(),
            })
            .collect(),
        Mode::PhysAddr => Vec::new(),
    };
    for n in &nodes {
        extras
            .enc_u
            .entry(n.enc)
            .or_insert_with(|| "UV".to_string());
    }
    let topo = Topology {
        source: file.to_string(),
        format: SourceFormat::Ini,
        book_size,
        mode,
        nodes,
        interleave_groups,
        warnings,
        ini: Some(extras),
    };
    if topo.books_total() == 0 {
        return Err(fail(
            "no node contributes any NVM (every nvm_size is \"0 @ 0x0\"): the Librarian needs at least one book; give at least one node a range \"<size> @ 0x<addr>\"".to_string(),
        ));
    }
    Ok(topo)
}

/// Form A: `[global] nvm_size_per_node`.
fn compact_nodes(g: &IniSection, node_count: u32, book_size: u64) -> Result<Vec<Node>, String> {
    let opt = g
        .get("nvm_size_per_node")
        .ok_or_else(|| "Missing option(s) in [global]: nvm_size_per_node".to_string())?;
    let raw = single(g, opt)?;
    let ctx = format!("[global] nvm_size_per_node = {raw}");
    let bytes = parse_size(raw, Some(book_size)).map_err(|e| format!("{ctx}: {e}"))?;
    if !bytes.is_multiple_of(book_size) {
        return Err(format!(
            "{ctx}: bytes_per_node not multiple of book size: {bytes} bytes is not a multiple of book_size_bytes {}; give a book count instead, e.g. {}B",
            format_size(book_size),
            (bytes / book_size).max(4) / 4 * 4
        ));
    }
    let books = bytes / book_size;
    check_lza_books(&ctx, books, "Books per node is not divisible by 4")?;
    Ok((1..=node_count)
        .map(|id| {
            let mut node = Node::ini_node(id, Node::default_hostname(id));
            node.media_controllers = auto_mcs(&node, books, book_size);
            node
        })
        .collect())
}

/// LZA books per node: > 0, divisible by 4 (four equal MCs), at most 8192.
fn check_lza_books(ctx: &str, books: u64, not_div4: &str) -> Result<(), String> {
    if books == 0 {
        return Err(format!(
            "{ctx}: book count must be > 0 (a node needs at least 4 books, e.g. 512B)"
        ));
    }
    if !books.is_multiple_of(4) {
        return Err(format!(
            "{ctx}: {not_div4}: {books} books cannot be split over 4 media controllers; use a multiple of 4, e.g. {}B",
            (books / 4 * 4).max(4)
        ));
    }
    if books > MAX_BOOKS_PER_IG {
        return Err(format!(
            "{ctx}: book count too large: {books} books per node, at most {MAX_BOOKS_PER_IG} (13-bit book numbers); use bigger books or less NVM"
        ));
    }
    Ok(())
}

/// Forms B and C: one section per node.
fn section_nodes(sections: &[&IniSection], book_size: u64) -> Result<(Mode, Vec<Node>), String> {
    let mut mode: Option<(Mode, String)> = None;
    let mut ids: HashMap<u32, String> = HashMap::new();
    let mut nodes = Vec::new();
    for sec in sections {
        let errname = format!("[{}]", sec.name);
        let id_opt = sec
            .get("node_id")
            .ok_or_else(|| format!("Missing option(s) in {errname}: node_id"))?;
        let id_raw = single(sec, id_opt)?;
        let node_id = match parse_plain_int(id_raw) {
            Some(n) if (1..=u64::from(MAX_NODE_ID)).contains(&n) => n as u32,
            _ => {
                return Err(format!(
                    "{errname} node_id = {id_raw}: bad node id: must be a whole number between 1 and {MAX_NODE_ID}"
                ))
            }
        };
        if let Some(other) = ids.get(&node_id) {
            return Err(format!(
                "{errname} node_id = {id_raw}: node_id {node_id} is already used by [{other}]; every node needs its own node_id"
            ));
        }
        ids.insert(node_id, sec.name.clone());
        let expected = Node::default_hostname(node_id);
        if sec.name.starts_with("node") && sec.name != expected {
            return Err(format!(
                "{errname} node_id = {id_raw}: nodeXX format does not match node_id: name the section [{expected}], or use a hostname that does not start with \"node\""
            ));
        }
        let mut node = Node::ini_node(node_id, sec.name.clone());

        let size_opt = sec
            .get("nvm_size")
            .ok_or_else(|| format!("Missing option(s) in {errname}: nvm_size"))?;
        let lines: Vec<&(usize, String)> = size_opt.lines().collect();
        if lines.is_empty() {
            return Err(format!(
                "{errname} nvm_size is empty (line {}): give a size such as 512B, or \"<size> @ 0x<address>\" lines",
                size_opt.line
            ));
        }
        let mut lza_books: Option<u64> = None;
        let mut node_books = 0u64;
        for (lineno, line) in lines {
            let ctx = format!("{errname} nvm_size = {line} (line {lineno})");
            let parts: Vec<&str> = line.split('@').collect();
            let (size_str, addr) = match parts.as_slice() {
                [size] => (*size, None),
                [size, addr] => (*size, Some(parse_addr(&ctx, addr)?)),
                _ => {
                    return Err(format!(
                    "{ctx}: bad nvm_size syntax: expected \"<size>\" or \"<size> @ 0x<address>\""
                ))
                }
            };
            let line_mode = if addr.is_some() {
                Mode::PhysAddr
            } else {
                Mode::Lza
            };
            match &mode {
                None => mode = Some((line_mode, errname.clone())),
                Some((m, first)) if *m != line_mode => {
                    return Err(format!(
                        "{ctx}: Cannot switch BII mode: {first} uses {} ({}) but this line is {} ({}); use one form for every node",
                        m,
                        form_words(*m),
                        line_mode,
                        form_words(line_mode)
                    ))
                }
                Some(_) => {}
            }
            let size = parse_size(size_str, Some(book_size)).map_err(|e| format!("{ctx}: {e}"))?;
            if addr == Some(0) && size == 0 {
                continue; // "0 @ 0x0": this node contributes no FAM on this line
            }
            if !size.is_multiple_of(book_size) {
                return Err(format!(
                    "{ctx}: NVM size is not multiple of book size: {size} bytes is not a multiple of {}; give a book count instead, e.g. {}B",
                    format_size(book_size),
                    (size / book_size).max(1)
                ));
            }
            let books = size / book_size;
            match addr {
                None => {
                    if lza_books.is_some() {
                        return Err(format!(
                            "{ctx}: multiple ranges are illegal in MFT (1): without \"@ 0x<address>\" a node has exactly one nvm_size value"
                        ));
                    }
                    check_lza_books(&ctx, books, "books per node is not divisible by 4")?;
                    lza_books = Some(books);
                }
                Some(addr) => {
                    if books == 0 {
                        return Err(format!(
                            "{ctx}: book count must be > 0 (use \"0 @ 0x0\" for a node without FAM)"
                        ));
                    }
                    if addr < book_size {
                        return Err(format!(
                            "{ctx}: book size {book_size} bigger than address 0x{addr:x}: the address must be at least the book size (0 is reserved)"
                        ));
                    }
                    if !addr.is_multiple_of(book_size) {
                        return Err(format!(
                            "{ctx}: address 0x{addr:x} is not book-aligned: it must be a multiple of the book size {} (0x{book_size:x}), e.g. 0x{:x}",
                            format_size(book_size),
                            (addr / book_size).saturating_add(1).saturating_mul(book_size)
                        ));
                    }
                    if addr.checked_add(size).is_none_or(|end| end > MAX_PHYSADDR) {
                        return Err(format!(
                            "{ctx}: U-64 value won't slide into an SQLite signed INT: the range ends beyond 0x{MAX_PHYSADDR:x}"
                        ));
                    }
                    node_books += books;
                    node.ranges.push(PhysRange { addr, size });
                }
            }
        }
        // Only LZA ids carry a 13-bit book number; PHYSADDR ids are addresses, with no such limit
        // (a Superdome Flex partition can hold far more than 8192 books, as the original allowed).
        if lza_books.is_some() && node_books > MAX_BOOKS_PER_IG {
            return Err(format!(
                "{errname} nvm_size = {}: book count too large: {node_books} books in this node, at most {MAX_BOOKS_PER_IG} (13-bit book numbers); use bigger books",
                size_opt.shown()
            ));
        }
        if let Some(books) = lza_books {
            node.media_controllers = auto_mcs(&node, books, book_size);
        }
        nodes.push(node);
    }
    let mode = mode.map(|(m, _)| m).unwrap_or(Mode::Lza);
    if mode == Mode::PhysAddr {
        check_overlaps(&nodes, book_size)?;
    }
    Ok((mode, nodes))
}

fn form_words(m: Mode) -> &'static str {
    match m {
        Mode::Lza => "plain sizes",
        Mode::PhysAddr => "\"size @ 0xADDR\" ranges",
    }
}

fn parse_addr(ctx: &str, text: &str) -> Result<u64, String> {
    let a = text.trim().to_lowercase();
    let Some(hex) = a.strip_prefix("0x") else {
        return Err(format!(
            "{ctx}: address \"{a}\" must start with \"0x\" (a hexadecimal physical address)"
        ));
    };
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{ctx}: \"{a}\" is not a valid hex number"));
    }
    let digits = hex.trim_start_matches('0');
    if digits.len() > 16 {
        return Err(format!(
            "{ctx}: U-64 value won't slide into an SQLite signed INT: address {a} is beyond 0x{MAX_PHYSADDR:x}"
        ));
    }
    let v = u64::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16)
        .map_err(|_| format!("{ctx}: \"{a}\" is not a valid hex number"))?;
    if v > MAX_PHYSADDR {
        return Err(format!(
            "{ctx}: U-64 value won't slide into an SQLite signed INT: address {a} is beyond 0x{MAX_PHYSADDR:x}"
        ));
    }
    Ok(v)
}

/// Detects any intersection (partial overlap or full containment) of PHYSADDR ranges: first
/// within each node, then between nodes. The pair is reported in file order.
fn check_overlaps(nodes: &[Node], book_size: u64) -> Result<(), String> {
    // (start, end exclusive, node index, range index)
    type Span = (u64, u64, usize, usize);
    let find = |mut spans: Vec<Span>| -> Option<(Span, Span)> {
        spans.sort();
        let mut widest: Option<Span> = None;
        for s in spans {
            if let Some(w) = widest {
                if s.0 < w.1 {
                    return Some((w, s));
                }
                if s.1 > w.1 {
                    widest = Some(s);
                }
            } else {
                widest = Some(s);
            }
        }
        None
    };
    let describe = |a: Span, b: Span| -> String {
        // Earlier in file order first.
        let (a, b) = if (a.2, a.3) <= (b.2, b.3) {
            (a, b)
        } else {
            (b, a)
        };
        let (na, nb) = (&nodes[a.2], &nodes[b.2]);
        let books = |s: Span| (s.1 - s.0) / book_size;
        let head = if a.2 == b.2 {
            format!(
                "[{}] nvm_size: {} range 0x{:x} collides with its own range 0x{:x}",
                na.hostname, na.hostname, a.0, b.0
            )
        } else {
            format!(
                "[{}] nvm_size: {} range 0x{:x} collides with {} range 0x{:x}",
                nb.hostname, na.hostname, a.0, nb.hostname, b.0
            )
        };
        let how = if (a.0 <= b.0 && b.1 <= a.1) || (b.0 <= a.0 && a.1 <= b.1) {
            "contains"
        } else {
            "overlaps"
        };
        let (outer, inner) = if how == "contains" && !(a.0 <= b.0 && b.1 <= a.1) {
            (b, a)
        } else {
            (a, b)
        };
        format!(
            "{head}: [0x{:x}, 0x{:x}) ({} books) {how} [0x{:x}, 0x{:x}) ({} books); physical address ranges must not overlap",
            outer.0,
            outer.1,
            books(outer),
            inner.0,
            inner.1,
            books(inner)
        )
    };
    let all: Vec<Span> = nodes
        .iter()
        .enumerate()
        .flat_map(|(ni, n)| {
            n.ranges
                .iter()
                .enumerate()
                .map(move |(ri, r)| (r.addr, r.addr + r.size, ni, ri))
        })
        .collect();
    let mut by_node: BTreeMap<usize, Vec<Span>> = BTreeMap::new();
    for s in &all {
        by_node.entry(s.2).or_default().push(*s);
    }
    for spans in by_node.into_values() {
        if let Some((a, b)) = find(spans) {
            return Err(describe(a, b));
        }
    }
    if let Some((a, b)) = find(all) {
        return Err(describe(a, b));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Topology {
        match parse("t.ini", text) {
            Ok(t) => t,
            Err(e) => panic!("expected success, got: {e}"),
        }
    }

    fn bad(text: &str) -> String {
        match parse("t.ini", text) {
            Ok(t) => panic!("expected an error, got {}", t.summary()),
            Err(e) => {
                let s = e.to_string();
                assert!(s.starts_with("t.ini: "), "message must name the file: {s}");
                assert!(!s.contains('\n'), "one-line message expected: {s}");
                s
            }
        }
    }

    fn assert_has(msg: &str, parts: &[&str]) {
        for p in parts {
            assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
        }
    }

    const FAME4: &str =
        "[global]\nnode_count = 4\nbook_size_bytes = 8M\nnvm_size_per_node = 1024B\n";

    #[test]
    fn compact_form() {
        let t = ok(FAME4);
        assert_eq!(t.mode, Mode::Lza);
        assert_eq!(t.book_size, 8 << 20);
        assert_eq!(t.nodes.len(), 4);
        assert_eq!(t.books_total(), 4096);
        assert_eq!(t.interleave_groups.len(), 4);
        let n = &t.nodes[3];
        assert_eq!((n.node_id, n.enc, n.node), (4, 1, 4));
        assert_eq!(n.hostname, "node04");
        assert_eq!(n.media_controllers.len(), 4);
        assert_eq!(n.media_controllers[2].module_size_books, 256);
        assert_eq!(
            n.media_controllers[2].coordinate,
            "MemoryBoard/1/MediaController/3"
        );
        assert_eq!(n.media_controllers[2].raw_cid, (3 << 4) | 10);
        assert_eq!(n.media_controllers[2].memory_size, 256 * (8 << 20));
        assert_eq!(t.interleave_groups[3].group_id, 3);
        assert_eq!(t.nvm_bytes_total(), 4096 * (8 << 20));
    }

    #[test]
    fn option_names_case_insensitive_and_comments() {
        let t = ok("# c\n; c\n[global]\nNode_Count: 2 # two\nBOOK_SIZE_BYTES = 2m ; inline\n  ; indented comment\nnvm_size_per_node = 8B\nDatacenter = dc1\n");
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.book_size, 2 << 20);
        assert_eq!(t.books_total(), 16);
        assert_eq!(t.ini.as_ref().unwrap().datacenter.as_deref(), Some("dc1"));
    }

    #[test]
    fn bad_book_sizes() {
        let m = bad("[global]\nnode_count = 4\nbook_size_bytes = 3M\nnvm_size_per_node = 8B\n");
        assert_has(
            &m,
            &[
                "[global] book_size_bytes = 3M",
                "power of two between 2M and 8G",
                "not a power of 2",
            ],
        );
        let m = bad("[global]\nnode_count = 4\nbook_size_bytes = 1M\nnvm_size_per_node = 8B\n");
        assert_has(&m, &["book_size_bytes = 1M", "out of range [2M, 8G]"]);
        let m = bad("[global]\nnode_count = 4\nbook_size_bytes = 16G\nnvm_size_per_node = 8B\n");
        assert_has(&m, &["out of range"]);
        let m = bad("[global]\nnode_count = 4\nbook_size_bytes = 8B\nnvm_size_per_node = 8B\n");
        assert_has(&m, &["book_size_bytes = 8B", "multiplier suffix \"B\""]);
        let m = bad("[global]\nnode_count = 4\nbook_size_bytes = 8Q\nnvm_size_per_node = 8B\n");
        assert_has(&m, &["book_size_bytes = 8Q", "unknown size suffix \"Q\""]);
        let m = bad("[global]\nnode_count = 4\nbook_size_bytes = eight\nnvm_size_per_node = 8B\n");
        assert_has(&m, &["is not an integer"]);
    }

    #[test]
    fn node_count_rules() {
        let m = bad("[global]\nnode_count = 81\nbook_size_bytes = 8M\nnvm_size_per_node = 8B\n");
        assert_has(
            &m,
            &[
                "node_count = 81",
                "Bad node enumeration value",
                "between 1 and 80",
            ],
        );
        let m = bad("[global]\nnode_count = 0\nbook_size_bytes = 8M\nnvm_size_per_node = 8B\n");
        assert_has(&m, &["node_count = 0"]);
        let m = bad("[global]\nnode_count = four\nbook_size_bytes = 8M\nnvm_size_per_node = 8B\n");
        assert_has(&m, &["node_count = four", "not an integer"]);
        let m = bad("[global]\nnode_count = 3\nbook_size_bytes = 8M\n[node01]\nnode_id = 1\nnvm_size = 8B\n[node02]\nnode_id = 2\nnvm_size = 8B\n");
        assert_has(
            &m,
            &[
                "[global] node_count = 3 but actual count = 2",
                "set node_count = 2",
            ],
        );
        let m = bad("[global]\nnode_count = 3\nbook_size_bytes = 8M\n");
        assert_has(&m, &["nvm_size_per_node", "actual count = 0"]);
        // 80 is the maximum.
        let t = ok("[global]\nnode_count = 80\nbook_size_bytes = 8G\nnvm_size_per_node = 4T\n");
        assert_eq!(t.books_total(), 80 * 512);
        assert_eq!(t.nodes[79].hostname, "node80");
    }

    #[test]
    fn illegal_and_missing_options() {
        let m = bad("[global]\nnode_count = 4\nbook_size_bytes = 8M\nbytes_per_node = 512B\n");
        assert_has(
            &m,
            &[
                "Illegal option(s) in [global]: bytes_per_node",
                "did you mean bytes_per_node -> nvm_size_per_node?",
            ],
        );
        let m = bad("[global]\nbook_size_bytes = 8M\nnvm_size_per_node = 512B\n");
        assert_has(
            &m,
            &[
                "Missing option(s) in [global]: node_count",
                "required options are book_size_bytes, node_count",
            ],
        );
        let m = bad(
            "[global]\nnode_count = 1\nbook_size_bytes = 8M\n[node01]\nnode_id = 1\nnvmsize = 8B\n",
        );
        assert_has(
            &m,
            &[
                "Missing option(s) in [node01]: nvm_size",
                "Illegal option(s) in [node01]: nvmsize",
                "nvmsize -> nvm_size",
            ],
        );
        let m = bad("[global]\nnode_count = 1\nbook_size_bytes = 8M\nnvm_size_per_node = 8B\n[enclosure1]\nx = 1\n");
        assert_has(&m, &["[enclosure1]", "u"]);
        let m = bad("[Global]\nnode_count = 1\nbook_size_bytes = 8M\nnvm_size_per_node = 8B\n");
        assert_has(
            &m,
            &["Missing [global] section", "[Global]", "case-sensitive"],
        );
    }

    #[test]
    fn reader_errors() {
        assert_has(&bad(""), &["Missing/invalid/empty config file"]);
        assert_has(&bad("# only a comment\n\n"), &["empty config file"]);
        assert_has(
            &bad("node_count = 4\n[global]\n"),
            &["line 1", "outside any section"],
        );
        assert_has(
            &bad("[global\nnode_count = 4\n"),
            &["line 1", "malformed section header"],
        );
        assert_has(
            &bad("[global]\nnode_count = 4\nnode_count = 5\n"),
            &["line 3", "option \"node_count\" given twice"],
        );
        assert_has(
            &bad("[global]\nnode_count = 4\n[global]\n"),
            &["line 3", "duplicate section [global]"],
        );
        assert_has(
            &bad("[global]\njunk\n"),
            &["line 2", "expected \"name = value\""],
        );
        assert_has(
            &bad("[DEFAULT]\nx=1\n[global]\n"),
            &["[DEFAULT] is not supported"],
        );
        assert_has(&bad("[global]\n= 4\n"), &["missing option name"]);
    }

    #[test]
    fn compact_form_rules() {
        let base = "[global]\nnode_count = 2\nbook_size_bytes = 8M\n";
        let m = bad(&format!("{base}nvm_size_per_node = 12M\n"));
        assert_has(
            &m,
            &[
                "[global] nvm_size_per_node = 12M",
                "bytes_per_node not multiple of book size",
            ],
        );
        let m = bad(&format!("{base}nvm_size_per_node = 6B\n"));
        assert_has(
            &m,
            &[
                "nvm_size_per_node = 6B",
                "Books per node is not divisible by 4",
                "e.g. 4B",
            ],
        );
        let m = bad(&format!("{base}nvm_size_per_node = 8196B\n"));
        assert_has(&m, &["book count too large", "8196 books", "at most 8192"]);
        let m = bad(&format!("{base}nvm_size_per_node = 0\n"));
        assert_has(&m, &["book count must be > 0"]);
        let t = ok(&format!("{base}nvm_size_per_node = 8192B\n"));
        assert_eq!(t.books_total(), 2 * 8192);
        let t = ok(&format!("{base}nvm_size_per_node = 1G\n"));
        assert_eq!(t.books_total(), 2 * 128);
    }

    #[test]
    fn per_node_lza_form() {
        let t = ok("[global]\nnode_count = 2\nbook_size_bytes = 8G\n[node02]\nnode_id = 2\nnvm_size = 128B\n\n[fred]\nnode_id = 18\nnvm_size = 1T\n");
        assert_eq!(t.mode, Mode::Lza);
        assert_eq!(t.nodes[0].hostname, "node02");
        assert_eq!(t.nodes[1].hostname, "fred");
        assert_eq!((t.nodes[1].enc, t.nodes[1].node), (2, 8));
        assert_eq!(t.books_total(), 256);
        assert_eq!(t.interleave_groups[1].group_id, 17);
        assert_eq!(t.interleave_groups[1].total_books(), 128);
    }

    #[test]
    fn per_node_rules() {
        let g = "[global]\nnode_count = 1\nbook_size_bytes = 8M\n";
        assert_has(
            &bad(&format!("{g}[node01]\nnode_id = 81\nnvm_size = 8B\n")),
            &["[node01] node_id = 81", "bad node id"],
        );
        assert_has(
            &bad(&format!("{g}[node01]\nnode_id = x\nnvm_size = 8B\n")),
            &["bad node id"],
        );
        assert_has(
            &bad(&format!("{g}[node1]\nnode_id = 1\nnvm_size = 8B\n")),
            &[
                "[node1]",
                "nodeXX format does not match node_id",
                "[node01]",
            ],
        );
        assert_has(
            &bad(&format!("{g}[node01]\nnode_id = 1\nnvm_size = 6B\n")),
            &[
                "[node01] nvm_size = 6B",
                "books per node is not divisible by 4",
            ],
        );
        assert_has(
            &bad(&format!("{g}[node01]\nnode_id = 1\nnvm_size = 12M\n")),
            &["NVM size is not multiple of book size"],
        );
        assert_has(
            &bad(&format!("{g}[node01]\nnode_id = 1\nnvm_size = 0\n")),
            &["book count must be > 0"],
        );
        assert_has(
            &bad(&format!("{g}[node01]\nnode_id = 1\nnvm_size = 8196B\n")),
            &["book count too large"],
        );
        assert_has(
            &bad(&format!(
                "{g}[node01]\nnode_id = 1\nnvm_size = 8B\n    8B\n"
            )),
            &["multiple ranges are illegal in MFT (1)"],
        );
        assert_has(
            &bad(&format!("{g}[node01]\nnode_id = 1\nnvm_size =\n")),
            &["[node01] nvm_size is empty"],
        );
        assert_has(
            &bad("[global]\nnode_count = 2\nbook_size_bytes = 8M\n[a]\nnode_id = 1\nnvm_size = 8B\n[b]\nnode_id = 1\nnvm_size = 8B\n"),
            &["[b] node_id = 1", "already used by [a]"],
        );
        assert_has(
            &bad(&format!("{g}[node01]\nnode_id = 1\n  2\nnvm_size = 8B\n")),
            &["continuation lines are only allowed in nvm_size"],
        );
    }

    #[test]
    fn enclosure_sections() {
        let t = ok("[global]\nnode_count = 1\nbook_size_bytes = 8M\n[enclosure1]\nU = U3\n[node01]\nnode_id = 1\nnvm_size = 8B\n");
        assert_eq!(
            t.ini.as_ref().unwrap().enc_u.get(&1).map(String::as_str),
            Some("U3")
        );
        let g = "[global]\nnode_count = 1\nbook_size_bytes = 8M\n";
        assert_has(
            &bad(&format!(
                "{g}[node01]\nnode_id = 1\nnvm_size = 8B\n[enclosure1]\nu = U3\n"
            )),
            &["[enclosure1] must appear before any [node] section"],
        );
        assert_has(
            &bad(&format!(
                "{g}[enclosure9]\nu = U3\n[node01]\nnode_id = 1\nnvm_size = 8B\n"
            )),
            &["[enclosure9] bad section"],
        );
        assert_has(
            &bad(&format!(
                "{g}[enclosureX]\nu = U3\n[node01]\nnode_id = 1\nnvm_size = 8B\n"
            )),
            &["bad section"],
        );
        assert_has(
            &bad(&format!(
                "{g}[enclosure1]\nu = U/3\n[node01]\nnode_id = 1\nnvm_size = 8B\n"
            )),
            &["Illegal character U-value"],
        );
        assert_has(&bad(&format!("{g}[enclosure1]\nu = U3\n[enclosure01]\nu = U4\n[node01]\nnode_id = 1\nnvm_size = 8B\n")), &["duplicate section"]);
        // Default U value.
        let t = ok(&format!("{g}[node01]\nnode_id = 1\nnvm_size = 8B\n"));
        assert_eq!(
            t.ini.as_ref().unwrap().enc_u.get(&1).map(String::as_str),
            Some("UV")
        );
    }

    const SDFLEX_HEAD: &str = "[global]\nnode_count = 2\nbook_size_bytes = 2M\n";

    #[test]
    fn physaddr_continuation_lines() {
        // Same shape as SDFlex_good.ini: ranges on the option line and on continuation lines,
        // and an empty first line followed by a tab-indented one.
        let t = ok(&format!(
            "{SDFLEX_HEAD}[node01]\nnode_id = 1\nnvm_size = 88B @ 0xf00000000000\n           88B @ 0xf00100000000\n\n[node04]\nnode_id = 4\nnvm_size =\n\t   88B @ 0xf001a0000000\n"
        ));
        assert_eq!(t.mode, Mode::PhysAddr);
        assert_eq!(t.nodes[0].ranges.len(), 2);
        assert_eq!(
            t.nodes[0].ranges[1],
            PhysRange {
                addr: 0xf00100000000,
                size: 88 << 21
            }
        );
        assert_eq!(
            t.nodes[1].ranges,
            vec![PhysRange {
                addr: 0xf001a0000000,
                size: 88 << 21
            }]
        );
        assert!(t.nodes[0].media_controllers.is_empty());
        assert!(t.interleave_groups.is_empty());
        assert_eq!(t.books_total(), 264);
        // A blank line inside the value and a comment between continuation lines are fine.
        let t = ok(&format!(
            "{SDFLEX_HEAD}[node01]\nnode_id = 1\nnvm_size =\n  4B @ 0x10000000\n\n  # comment\n  4B @ 0x20000000\n[node02]\nnode_id = 2\nnvm_size = 4B @ 0x30000000\n"
        ));
        assert_eq!(t.nodes[0].ranges.len(), 2);
        // An unindented range line is not a continuation.
        let m = bad(&format!(
            "{SDFLEX_HEAD}[node01]\nnode_id = 1\nnvm_size = 4B @ 0x10000000\n4B @ 0x20000000\n"
        ));
        assert_has(&m, &["line 7", "continuation lines must be indented"]);
    }

    #[test]
    fn physaddr_zero_ranges_are_skipped() {
        let t = ok(&format!(
            "{SDFLEX_HEAD}[node01]\nnode_id = 1\nnvm_size = 0 @ 0x0\n[node02]\nnode_id = 2\nnvm_size = 0 @ 0x0\n    4B @ 0x40000000\n"
        ));
        assert_eq!(t.mode, Mode::PhysAddr);
        assert!(t.nodes[0].ranges.is_empty());
        assert_eq!(t.nodes[1].ranges.len(), 1);
        assert_eq!(t.books_total(), 4);
        assert_eq!(t.intlv_group_count(), 1);
        let m = bad(&format!(
            "{SDFLEX_HEAD}[node01]\nnode_id = 1\nnvm_size = 0 @ 0x0\n[node02]\nnode_id = 2\nnvm_size = 0 @ 0x0\n"
        ));
        assert_has(&m, &["no node contributes any NVM"]);
    }

    #[test]
    fn physaddr_rules() {
        let n = |v: &str| {
            format!("[global]\nnode_count = 1\nbook_size_bytes = 2M\n[node01]\nnode_id = 1\nnvm_size = {v}\n")
        };
        assert_has(
            &bad(&n("4B @ f0000000")),
            &["address \"f0000000\" must start with \"0x\""],
        );
        assert_has(
            &bad(&n("4B @ 0xfg000000")),
            &["\"0xfg000000\" is not a valid hex number"],
        );
        assert_has(&bad(&n("4B @ 0x")), &["not a valid hex number"]);
        assert_has(
            &bad(&n("4B @ 0x300001")),
            &["address 0x300001 is not book-aligned", "e.g. 0x400000"],
        );
        assert_has(
            &bad(&n("4B @ 0x10000")),
            &["book size 2097152 bigger than address 0x10000"],
        );
        assert_has(&bad(&n("4B @ 0x0")), &["bigger than address 0x0"]);
        assert_has(&bad(&n("0 @ 0x200000")), &["book count must be > 0"]);
        assert_has(
            &bad(&n("3M @ 0x200000")),
            &["NVM size is not multiple of book size"],
        );
        assert_has(
            &bad(&n("4B @ 0x8000000000000000")),
            &["U-64 value won't slide into an SQLite signed INT"],
        );
        assert_has(&bad(&n("4B @ 0x1ffffffffffffffff")), &["U-64 value"]);
        assert_has(&bad(&n("4B @ 0x7fffffffffe00000")), &["U-64 value"]);
        assert_has(
            &bad(&n("4B @ 0x200000 @ 0x400000")),
            &["bad nvm_size syntax"],
        );
        // PHYSADDR ids are addresses: no 13-bit book-number limit per node.
        assert_eq!(ok(&n("8193B @ 0x200000")).books_total(), 8193);
        // Odd book counts are fine in PHYSADDR mode.
        assert_eq!(ok(&n("3B @ 0x200000")).books_total(), 3);
        // Address hex digits are case-insensitive.
        assert_eq!(
            ok(&n("1B @ 0XABC00000")).nodes[0].ranges[0].addr,
            0xabc00000
        );
    }

    #[test]
    fn mode_mixing() {
        let m = bad(&format!(
            "{SDFLEX_HEAD}[node01]\nnode_id = 1\nnvm_size = 4B\n[node02]\nnode_id = 2\nnvm_size = 4B @ 0x40000000\n"
        ));
        assert_has(
            &m,
            &[
                "[node02] nvm_size = 4B @ 0x40000000",
                "Cannot switch BII mode",
                "[node01] uses LZA",
            ],
        );
        let m = bad(&format!(
            "{SDFLEX_HEAD}[node01]\nnode_id = 1\nnvm_size = 4B @ 0x40000000\n  4B\n"
        ));
        assert_has(&m, &["Cannot switch BII mode"]);
    }

    #[test]
    fn overlaps() {
        let two = |a: &str, b: &str| {
            format!("{SDFLEX_HEAD}[node01]\nnode_id = 1\nnvm_size = {a}\n[node04]\nnode_id = 4\nnvm_size = {b}\n")
        };
        // Partial overlap between nodes (the SDFlex_bad.ini case).
        let m = bad(&two(
            "88B @ 0xf0000000000\n  88B @ 0xf0010000000",
            "88B @ 0xf001a000000",
        ));
        assert_has(
            &m,
            &[
                "node01 range 0xf0010000000 collides with node04 range 0xf001a000000",
                "must not overlap",
            ],
        );
        // Full containment of an earlier range in a later one (missed by the original).
        let m = bad(&two("4B @ 0x40000000", "1024B @ 0x20000000"));
        assert_has(
            &m,
            &[
                "node01 range 0x40000000 collides with node04 range 0x20000000",
                "contains",
            ],
        );
        // And the other way round.
        let m = bad(&two("1024B @ 0x20000000", "4B @ 0x40000000"));
        assert_has(&m, &["collides with node04 range 0x40000000", "contains"]);
        // Identical ranges.
        assert_has(
            &bad(&two("4B @ 0x40000000", "4B @ 0x40000000")),
            &["collides"],
        );
        // Within one node, including containment.
        let m = bad(&two(
            "4B @ 0x40000000\n  1024B @ 0x20000000",
            "4B @ 0xc0000000",
        ));
        assert_has(
            &m,
            &["node01 range 0x40000000 collides with its own range 0x20000000"],
        );
        // Intra-node collisions are reported before inter-node ones.
        let m = bad(&two(
            "4B @ 0x40000000",
            "4B @ 0x40000000\n  4B @ 0x50000000\n 4B @ 0x50000000",
        ));
        assert_has(
            &m,
            &["node04 range 0x50000000 collides with its own range 0x50000000"],
        );
        // Adjacent ranges do not collide.
        let t = ok(&two("4B @ 0x40000000", "4B @ 0x40800000"));
        assert_eq!(t.books_total(), 8);
    }
}
