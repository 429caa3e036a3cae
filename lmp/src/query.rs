//! What LMP reports, read straight from the database (a WAL reader never blocks the Librarian).
//! Each function returns the JSON body of one view, with the original's field names and shapes.

use rusqlite::{params, Connection, OptionalExtension, Params, Row};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A view failed: the HTTP status the original used for it and the message.
#[derive(Debug)]
pub struct ViewError {
    pub status: u16,
    pub msg: String,
}

impl ViewError {
    pub fn new(status: u16, msg: impl Into<String>) -> Self {
        ViewError {
            status,
            msg: msg.into(),
        }
    }
}

impl From<rusqlite::Error> for ViewError {
    fn from(e: rusqlite::Error) -> Self {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        ViewError::new(if busy { 503 } else { 400 }, format!("database: {e}"))
    }
}

pub type ViewResult = Result<Value, ViewError>;

/// LMP's names for book states.
pub fn state_name(state: i64) -> &'static str {
    match state {
        0 => "available",
        1 => "allocated",
        2 => "notready",
        3 => "offline",
        _ => "unknown",
    }
}

/// Heartbeat period of the node daemons: a node whose last heartbeat is older is "indeterminate".
pub const HEARTBEAT_SECS: i64 = 10;

fn book_size(db: &Connection) -> Result<i64, ViewError> {
    Ok(db.query_row("SELECT book_size_bytes FROM globals", [], |r| r.get(0))?)
}

/// Book counts by `allocated` value.
pub fn books_by_state(db: &Connection) -> Result<BTreeMap<i64, i64>, ViewError> {
    let sql = "SELECT allocated, count(*) FROM books GROUP BY allocated";
    Ok(rows(db, sql, [])?.into_iter().collect())
}

/// Every row that `sql` selects with `params`, as a tuple of its columns. The statement is
/// cached: the views run the same few queries on every refresh of the dashboard.
fn rows<T>(db: &Connection, sql: &str, params: impl Params) -> Result<Vec<T>, ViewError>
where
    T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error>,
{
    let mut stmt = db.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| T::try_from(r))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn now() -> i64 {
    lfs_db::now_secs()
}

pub fn global(db: &Connection) -> ViewResult {
    let bs = book_size(db)?;
    let total: i64 = db.query_row("SELECT books_total FROM globals", [], |r| r.get(0))?;
    let by = books_by_state(db)?;
    let n = |s: i64| by.get(&s).copied().unwrap_or(0) * bs;
    let ts = now() - HEARTBEAT_SECS;
    let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<i64, ViewError> {
        Ok(db.query_row(sql, p, |r| r.get(0))?)
    };
    let cpu: Option<f64> = db.query_row("SELECT AVG(cpu_percent) FROM SOCs", [], |r| r.get(0))?;
    let (a_shelves, a_books): (i64, Option<i64>) = db.query_row(
        "SELECT count(*), sum(book_count) FROM shelves JOIN opened_shelves ON shelves.id = opened_shelves.shelf_id",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(json!({
        "memory": {
            "total": total * bs, "available": n(0), "allocated": n(1), "notready": n(2), "offline": n(3),
        },
        "socs": {
            "total": count("SELECT count(*) FROM FRDnodes", &[])?,
            "active": count("SELECT count(*) FROM SOCs WHERE status=1 AND heartbeat>=?", &[&ts])?,
            "offline": count("SELECT count(*) FROM SOCs WHERE status=0", &[])?,
            "indeterminate": count("SELECT count(*) FROM SOCs WHERE status=1 AND heartbeat<?", &[&ts])?,
            "cpu_percent": cpu,
        },
        "pools": {
            "total": count("SELECT count(*) FROM FAModules", &[])?,
            "active": count("SELECT count(*) FROM FAModules WHERE status=1", &[])?,
            "offline": count("SELECT count(*) FROM FAModules WHERE status=0", &[])?,
        },
        "active": {"shelves": a_shelves, "books": a_books.unwrap_or(0)},
    }))
}

fn sql_value(v: rusqlite::types::Value) -> Value {
    use rusqlite::types::Value as V;
    match v {
        V::Null => Value::Null,
        V::Integer(i) => json!(i),
        V::Real(f) => json!(f),
        V::Text(s) => json!(s),
        V::Blob(b) => json!(String::from_utf8_lossy(&b)),
    }
}

pub fn nodes(db: &Connection) -> ViewResult {
    let mut out = vec![];
    let mut stmt = db.prepare(
        "SELECT n.node_id, n.rack, n.enc, n.node, n.coordinate, n.serialNumber, \
         s.coordinate, s.tlsPublicCertificate, s.MAC, s.cpu_percent, s.rootfs_percent, \
         s.network_in, s.network_out, s.mem_percent \
         FROM FRDnodes n LEFT JOIN SOCs s ON s.node_id = n.node_id ORDER BY n.node_id",
    )?;
    let mut rows = stmt.query([])?;
    let mut mcs = db.prepare("SELECT coordinate, memorySize FROM FAModules WHERE node_id=?")?;
    while let Some(r) = rows.next()? {
        let v = |i: usize| -> Result<Value, rusqlite::Error> { Ok(sql_value(r.get(i)?)) };
        let node_id = v(0)?;
        let media: Vec<Value> = mcs
            .query_map([r.get::<_, rusqlite::types::Value>(0)?], |m| {
                Ok(json!({"coordinate": sql_value(m.get(0)?), "memorySize": sql_value(m.get(1)?)}))
            })?
            .collect::<Result<_, _>>()?;
        out.push(json!({
            "coordinate": v(4)?, "serialNumber": v(5)?,
            "soc": {
                "coordinate": v(6)?, "tlsPublicCertificate": v(7)?, "macAddress": v(8)?,
                "cpu_percent": v(9)?, "rootfs_percent": v(10)?, "network_in": v(11)?,
                "network_out": v(12)?, "mem_percent": v(13)?,
            },
            "mediaControllers": media,
            "node_id": node_id, "rack_num": v(1)?, "enc_num": v(2)?, "node_num": v(3)?,
        }));
    }
    Ok(json!({ "nodes": out }))
}

pub fn interleave_groups(db: &Connection) -> ViewResult {
    let mut groups: BTreeMap<i64, (i64, Vec<Value>)> = BTreeMap::new();
    let mut stmt = db.prepare("SELECT IG, memorySize, coordinate FROM FAModules")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let g = groups.entry(r.get(0)?).or_default();
        g.0 += r.get::<_, Option<i64>>(1)?.unwrap_or(0);
        g.1.push(sql_value(r.get(2)?));
    }
    Ok(json!({
        "interleaveGroups": groups.into_iter().map(|(ig, (size, mcs))| json!({
            "groupId": ig, "baseAddress": ig << 46, "size": size, "mediaControllers": mcs,
        })).collect::<Vec<_>>()
    }))
}

pub fn allocated(db: &Connection, coordinate: &str) -> ViewResult {
    let bs = book_size(db)? as f64;
    let mcs_per_ig = "SELECT IG, count(*) FROM FAModules GROUP BY IG";
    let per_ig: BTreeMap<i64, i64> = rows(db, mcs_per_ig, [])?.into_iter().collect();
    let mut sums = [0f64; 5];
    let books_by_ig_and_state = "SELECT books.intlv_group, books.allocated, count(*) FROM books \
         JOIN FAModules ON books.intlv_group = FAModules.IG \
         WHERE FAModules.coordinate LIKE ? GROUP BY books.intlv_group, books.allocated";
    let pattern = format!("/{coordinate}%");
    for (ig, state, n) in rows::<(i64, i64, i64)>(db, books_by_ig_and_state, [pattern])? {
        let share = bs / *per_ig.get(&ig).unwrap_or(&1) as f64 * n as f64;
        sums[0] += share;
        if (0..=3).contains(&state) {
            sums[1 + state as usize] += share;
        }
    }
    Ok(json!({"memory": {
        "total": sums[0] as i64, "available": sums[1] as i64, "allocated": sums[2] as i64,
        "notready": sums[3] as i64, "offline": sums[4] as i64,
    }}))
}

pub fn active(db: &Connection, coordinate: &str) -> ViewResult {
    let parts: Vec<&str> = coordinate.split('/').collect();
    // Case-insensitive: JSON topologies such as fame.json spell it `soc_board/1/soc/1`.
    let kind = if parts.len() >= 2 {
        parts[parts.len() - 2].to_ascii_lowercase()
    } else {
        String::new()
    };
    let base = "SELECT DISTINCT opened_shelves.shelf_id, shelves.book_count FROM opened_shelves \
                JOIN shelves ON opened_shelves.shelf_id = shelves.id \
                JOIN SOCs ON opened_shelves.node_id = SOCs.node_id";
    let rows: Vec<i64> = match kind.as_str() {
        "datacenter" => db
            .prepare(base)?
            .query_map([], |r| r.get::<_, Option<i64>>(1))?
            .map(|r| r.map(|v| v.unwrap_or(0)))
            .collect::<Result<_, _>>()?,
        "soc" => db
            .prepare(&format!("{base} WHERE SOCs.coordinate = ?"))?
            .query_map([format!("/{coordinate}")], |r| r.get::<_, Option<i64>>(1))?
            .map(|r| r.map(|v| v.unwrap_or(0)))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ViewError::new(
                404,
                format!(
                    "Bad coordinate \"{coordinate}\": the element before the last must be Datacenter or Soc"
                ),
            ))
        }
    };
    Ok(json!({"active": {"shelves": rows.len(), "books": rows.iter().sum::<i64>()}}))
}

fn policy(db: &Connection, shelf: i64) -> Result<String, ViewError> {
    Ok(db
        .prepare_cached(
            "SELECT value FROM shelf_xattrs WHERE shelf_id=? AND xattr='user.LFS.AllocationPolicy'",
        )?
        .query_row([shelf], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten()
        .unwrap_or_else(|| "unknown".into()))
}

pub fn shelves(db: &Connection) -> ViewResult {
    let mut entries = vec![];
    let mut stmt = db.prepare("SELECT id, name, mode, size_bytes FROM shelves ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        entries.push(json!({
            "name": sql_value(r.get(1)?), "type": "file", "owner": 42, "group": 42,
            "mode": sql_value(r.get(2)?), "size": sql_value(r.get(3)?), "id": id,
            "policy": policy(db, id)?,
        }));
    }
    Ok(json!({"owner": 42, "group": 42, "mode": "0777", "entries": entries}))
}

pub fn shelf(db: &Connection, name: &str) -> ViewResult {
    let bs = book_size(db)?;
    // By name only, the last match winning, as the original.
    let found: Option<(i64, Value, Value)> = db
        .query_row(
            "SELECT id, mode, size_bytes FROM shelves WHERE name=? ORDER BY id DESC LIMIT 1",
            [name],
            |r| Ok((r.get(0)?, sql_value(r.get(1)?), sql_value(r.get(2)?))),
        )
        .optional()?;
    let Some((id, mode, size)) = found else {
        return Err(ViewError::new(404, "Shelf does not exist"));
    };
    let mut active: Vec<Value> = vec![];
    for c in db
        .prepare(
            "SELECT SOCs.coordinate FROM opened_shelves JOIN SOCs ON opened_shelves.node_id = SOCs.node_id \
             WHERE opened_shelves.shelf_id = ?",
        )?
        .query_map([id], |r| r.get::<_, rusqlite::types::Value>(0))?
    {
        let c = sql_value(c?);
        if !active.contains(&c) {
            active.push(c);
        }
    }
    let books: Vec<i64> = db
        .prepare("SELECT book_id FROM books_on_shelves WHERE shelf_id = ? ORDER BY seq_num")?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(json!({
        "owner": 42, "group": 42, "mode": mode, "size": size, "booksize": bs,
        "policy": policy(db, id)?, "active": active, "books": books,
    }))
}

/// All books, or those of one interleave group (`intlv_group & 0xff`).
pub fn books(db: &Connection, ig: Option<i64>) -> ViewResult {
    let bs = book_size(db)?;
    let sql = "SELECT b.id, b.allocated, b.intlv_group, bos.seq_num, s.name FROM books b \
               LEFT JOIN books_on_shelves bos ON bos.book_id = b.id \
               LEFT JOIN shelves s ON s.id = bos.shelf_id \
               WHERE ?1 IS NULL OR (b.intlv_group & 255) = ?1 ORDER BY b.id";
    let mut stmt = db.prepare(sql)?;
    let mut rows = stmt.query(params![ig])?;
    let mut out = vec![];
    while let Some(r) = rows.next()? {
        let state = state_name(r.get(1)?);
        let mut b = Map::new();
        b.insert("lza".into(), json!(r.get::<_, i64>(0)?));
        b.insert("state".into(), json!(state));
        if ig.is_none() {
            b.insert("ig".into(), json!(r.get::<_, i64>(2)? & 0xff));
        }
        if state != "notready" {
            if let Some(seq) = r.get::<_, Option<i64>>(3)? {
                // The original reports seq_num x book size (one book too high); kept for its clients.
                b.insert("offset".into(), json!(seq * bs));
                b.insert("shelf".into(), sql_value(r.get(4)?));
            }
        }
        out.push(Value::Object(b));
    }
    if out.is_empty() {
        return Err(ViewError::new(404, "interleaveGroup does not exist"));
    }
    Ok(json!({"book_size": bs, "books": out}))
}

/// The first 500 shelves with their groups and opens, in three scans (no per-shelf subqueries:
/// `books_on_shelves` has no index).
fn shelf_rows(db: &Connection) -> Result<Vec<Value>, ViewError> {
    let mut groups: std::collections::HashMap<i64, std::collections::BTreeSet<i64>> =
        Default::default();
    let shelf_groups = "SELECT bos.shelf_id, b.intlv_group & 65535 FROM books_on_shelves bos \
         JOIN books b ON b.id = bos.book_id";
    for (s, g) in rows::<(i64, i64)>(db, shelf_groups, [])? {
        groups.entry(s).or_default().insert(g);
    }
    let opens_per_shelf = "SELECT shelf_id, count(*) FROM opened_shelves GROUP BY shelf_id";
    let opens: std::collections::HashMap<i64, i64> =
        rows(db, opens_per_shelf, [])?.into_iter().collect();
    let mut out = vec![];
    let mut stmt = db.prepare(
        "SELECT id, name, size_bytes, book_count, mode FROM shelves WHERE id > 3 ORDER BY id LIMIT 500",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let g: Vec<String> = groups
            .get(&id)
            .map(|s| s.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default();
        out.push(json!({
            "id": id, "name": sql_value(r.get(1)?), "size": sql_value(r.get(2)?),
            "books": sql_value(r.get(3)?), "mode": sql_value(r.get(4)?),
            "groups": g.join(","), "opens": opens.get(&id).copied().unwrap_or(0),
        }));
    }
    Ok(out)
}

/// Everything the live dashboard shows, in one read (`with_shelves`: include the shelf list).
pub fn dashboard(db: &Connection) -> ViewResult {
    summary(db, true)
}

fn summary(db: &Connection, with_shelves: bool) -> ViewResult {
    let bs = book_size(db)?;
    let by = books_by_state(db)?;
    let total: i64 = by.values().sum();
    let now = now();
    let mut per_ig: BTreeMap<i64, [i64; 4]> = BTreeMap::new();
    let books_per_ig = "SELECT intlv_group & 65535, allocated, count(*) FROM books GROUP BY 1, 2";
    for (ig, st, n) in rows::<(i64, i64, i64)>(db, books_per_ig, [])? {
        if (0..4).contains(&st) {
            per_ig.entry(ig).or_default()[st as usize] += n;
        }
    }
    let opens_per_node = "SELECT node_id, count(*) FROM opened_shelves GROUP BY node_id";
    let opens_by_node: BTreeMap<i64, i64> = rows(db, opens_per_node, [])?.into_iter().collect();
    let mut nodes = vec![];
    for r in db
        .prepare(
            "SELECT node_id, status, heartbeat, cpu_percent, mem_percent, network_in, network_out \
             FROM SOCs ORDER BY node_id",
        )?
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                r.get::<_, Option<f64>>(3)?,
                r.get::<_, Option<f64>>(4)?,
                r.get::<_, Option<f64>>(5)?,
                r.get::<_, Option<f64>>(6)?,
            ))
        })?
    {
        let (id, status, hb, cpu, mem, nin, nout) = r?;
        let age = if hb > 0 { Some(now - hb) } else { None };
        let late = status == 1 && age.is_none_or(|a| a > 3 * HEARTBEAT_SECS);
        nodes.push(json!({
            "node_id": id, "status": if status == 1 { "active" } else { "offline" },
            "heartbeat_age": age, "late": late, "cpu_percent": cpu, "mem_percent": mem,
            "network_in": nin, "network_out": nout, "opens": opens_by_node.get(&id).copied().unwrap_or(0),
        }));
    }
    let shelves = if with_shelves {
        shelf_rows(db)?
    } else {
        vec![]
    };
    let shelf_count: i64 = db.query_row("SELECT count(*) FROM shelves WHERE id > 3", [], |r| {
        r.get(0)
    })?;
    Ok(json!({
        "time": now,
        "book_size": bs,
        "books": {"total": total, "free": by.get(&0).copied().unwrap_or(0), "inuse": by.get(&1).copied().unwrap_or(0),
                  "zombie": by.get(&2).copied().unwrap_or(0), "offline": by.get(&3).copied().unwrap_or(0)},
        "groups": per_ig.into_iter().map(|(ig, c)| json!({"ig": ig, "free": c[0], "inuse": c[1], "zombie": c[2], "offline": c[3]})).collect::<Vec<_>>(),
        "nodes": nodes,
        "shelves": shelves,
        "shelf_count": shelf_count,
    }))
}

/// One Prometheus metric family and its samples.
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(String, String)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            samples: vec![],
        }
    }

    fn add(&mut self, labels: String, value: impl std::fmt::Display) {
        self.samples.push((labels, value.to_string()));
    }
}

/// Prometheus text exposition (all gauges) of the pool, shelves, opens and node heartbeats.
pub fn metrics(db: &Connection) -> Result<String, ViewError> {
    let d = summary(db, false)?;
    let mut books = Family::new("lfs_books", "Books in the FAM pool by state.");
    for st in ["free", "inuse", "zombie", "offline"] {
        books.add(format!("state=\"{st}\""), &d["books"][st]);
    }
    let mut size = Family::new("lfs_book_size_bytes", "Size of one book in bytes.");
    size.add(String::new(), &d["book_size"]);
    let mut groups = Family::new("lfs_group_books", "Books per interleave group and state.");
    for g in d["groups"].as_array().into_iter().flatten() {
        for st in ["free", "inuse", "zombie", "offline"] {
            groups.add(format!("ig=\"{}\",state=\"{st}\"", g["ig"]), &g[st]);
        }
    }
    let mut shelves = Family::new(
        "lfs_shelves",
        "Shelves (files, directories, symlinks) besides the three reserved ones.",
    );
    shelves.add(String::new(), &d["shelf_count"]);
    let mut opens = Family::new("lfs_open_handles", "Open handles held per node.");
    let mut up = Family::new(
        "lfs_node_up",
        "1 if the node's daemon reports itself active.",
    );
    let mut age = Family::new(
        "lfs_node_heartbeat_age_seconds",
        "Seconds since the node's last heartbeat.",
    );
    let mut cpu = Family::new("lfs_node_cpu_percent", "CPU use the node last reported.");
    let mut mem = Family::new("lfs_node_mem_percent", "Memory use the node last reported.");
    for n in d["nodes"].as_array().into_iter().flatten() {
        let l = format!("node=\"{}\"", n["node_id"]);
        opens.add(l.clone(), &n["opens"]);
        up.add(l.clone(), (n["status"] == "active") as i32);
        if let Some(a) = n["heartbeat_age"].as_i64() {
            age.add(l.clone(), a);
        }
        if let Some(v) = n["cpu_percent"].as_f64() {
            cpu.add(l.clone(), v);
        }
        if let Some(v) = n["mem_percent"].as_f64() {
            mem.add(l, v);
        }
    }
    let mut text = String::new();
    for f in [books, size, groups, shelves, opens, up, age, cpu, mem] {
        text.push_str(&format!(
            "# HELP {} {}\n# TYPE {} gauge\n",
            f.name, f.help, f.name
        ));
        for (labels, v) in f.samples {
            if labels.is_empty() {
                text.push_str(&format!("{} {v}\n", f.name));
            } else {
                text.push_str(&format!("{}{{{labels}}} {v}\n", f.name));
            }
        }
    }
    Ok(text)
}
