//! LMP, the Librarian Monitoring Protocol: the original's ReST views (same paths, JSON shapes and
//! `Accept`-header versioning, so HPE's dashboard works against it), HTML pages for browsers, a live
//! dashboard at `/` and Prometheus metrics at `/metrics`.
//!
//! LMP only reads the database, through read-only WAL connections, so it never blocks the Librarian
//! and always sees committed state.

pub mod query;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use query::{ViewError, ViewResult};
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub const API_VERSION: &str = "1.0";
pub const DEFAULT_PORT: u16 = 31179;

/// Shared by every request: where the database is, idle read connections, the page templates and the
/// "fabric %" fed through a FIFO, as in the original.
pub struct Lmp {
    db: PathBuf,
    idle: Mutex<Vec<Connection>>,
    pages: tera::Tera,
    fabric: Mutex<(Option<std::fs::File>, i64)>,
    /// The Librarian's own metrics endpoint (request counts and latencies), folded into /metrics.
    librarian_metrics: Option<String>,
    /// Recent answers of the views pollers hit (see [`FRESH`]).
    recent: Mutex<std::collections::HashMap<&'static str, (std::time::Instant, Value)>>,
}

/// How long an answer of `/lmp/global/`, `/dashboard.json` or `/metrics` is served again: many
/// dashboards and scrapers polling at once then cost the database (and the Librarian) one query a
/// second instead of one per request. Monitoring at most a second old is still monitoring.
pub const FRESH: std::time::Duration = std::time::Duration::from_secs(1);

const PAGES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/lmp/base.html")),
    ("views.html", include_str!("../../templates/lmp/views.html")),
    (
        "global.html",
        include_str!("../../templates/lmp/global.html"),
    ),
    ("nodes.html", include_str!("../../templates/lmp/nodes.html")),
    (
        "interleave_groups.html",
        include_str!("../../templates/lmp/interleave_groups.html"),
    ),
    (
        "memory.html",
        include_str!("../../templates/lmp/memory.html"),
    ),
    (
        "directory.html",
        include_str!("../../templates/lmp/directory.html"),
    ),
    ("shelf.html", include_str!("../../templates/lmp/shelf.html")),
    ("books.html", include_str!("../../templates/lmp/books.html")),
    (
        "dashboard.html",
        include_str!("../../templates/lmp/dashboard.html"),
    ),
];

fn hex16(
    v: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    Ok(tera::Value::String(match v.as_i64() {
        Some(n) => format!("0x{n:016x}"),
        None => v.to_string(),
    }))
}

impl Lmp {
    /// `fifo`: a FIFO whose last number written (0..100) is reported by `/fab/`.
    /// `librarian_metrics`: URL of the Librarian's `--metrics-port` endpoint.
    pub fn new(
        db: PathBuf,
        fifo: Option<PathBuf>,
        librarian_metrics: Option<String>,
    ) -> anyhow::Result<Arc<Lmp>> {
        if !db.exists() {
            anyhow::bail!(
                "DB file {} does not exist: give the Librarian's database with -d",
                db.display()
            );
        }
        let mut pages = tera::Tera::default();
        pages.add_raw_templates(PAGES.to_vec())?;
        pages.register_filter("hex16", hex16);
        let fifo = match fifo {
            Some(p) => Some(open_fifo(&p)?),
            None => None,
        };
        Ok(Arc::new(Lmp {
            db,
            idle: Mutex::new(vec![]),
            pages,
            fabric: Mutex::new((fifo, 7)),
            librarian_metrics,
            recent: Mutex::new(Default::default()),
        }))
    }

    fn connection(&self) -> Result<Connection, ViewError> {
        if let Some(c) = self.idle.lock().expect("pool lock").pop() {
            return Ok(c);
        }
        if !self.db.exists() {
            return Err(ViewError::new(
                503,
                format!("database {} is missing", self.db.display()),
            ));
        }
        let c = Connection::open_with_flags(
            &self.db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| ViewError::new(503, format!("cannot open {}: {e}", self.db.display())))?;
        let _ = c.busy_timeout(std::time::Duration::from_secs(2));
        Ok(c)
    }

    /// [`read`](Self::read), but an answer computed less than [`FRESH`] ago is reused.
    async fn read_recent(
        self: &Arc<Self>,
        key: &'static str,
        f: impl FnOnce(&Connection) -> Result<Value, ViewError> + Send + 'static,
    ) -> Result<Value, ViewError> {
        if let Some((at, v)) = self.recent.lock().expect("cache lock").get(key) {
            if at.elapsed() < FRESH {
                return Ok(v.clone());
            }
        }
        let v = self.read(f).await?;
        self.recent
            .lock()
            .expect("cache lock")
            .insert(key, (std::time::Instant::now(), v.clone()));
        Ok(v)
    }

    /// Runs a query on a pooled read-only connection, off the async runtime.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, ViewError> + Send + 'static,
    ) -> Result<T, ViewError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = me.connection()?;
            let out = f(&conn);
            let mut idle = me.idle.lock().expect("pool lock");
            if idle.len() < 8 {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(|e| ViewError::new(500, format!("query task failed: {e}")))?
    }
}

fn open_fifo(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    match std::fs::metadata(path) {
        Ok(m) if !m.file_type().is_fifo() => {
            anyhow::bail!(
                "{} exists but is not a FIFO: remove it or pick another --fifo",
                path.display()
            )
        }
        Ok(_) => {}
        Err(_) => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
            // SAFETY: a valid NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o666) } != 0 {
                anyhow::bail!(
                    "cannot create FIFO {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?)
}

/// `Accept` says JSON (or there is no `Accept` at all, as the original treats it).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .is_none_or(|a| a.to_str().unwrap_or("").contains("application/json"))
}

fn error(status: u16, msg: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
    (status, axum::Json(json!({"error": msg.into()}))).into_response()
}

/// The original's version check for JSON requests, and its Content-Type suffix on every response.
async fn versioning(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if (path.starts_with("/lmp/") || path.starts_with("/fab/")) && wants_json(req.headers()) {
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .unwrap_or("");
        let version = accept
            .split(';')
            .filter(|e| e.contains("version"))
            .find_map(|e| e.rsplit('=').next()?.trim().parse::<f64>().ok());
        match version {
            None => return suffix(error(418, "No version sent")),
            Some(v) if v != 1.0 => {
                return suffix(error(418, format!("Bad version: {v:?} != {API_VERSION}")))
            }
            _ => {}
        }
    }
    suffix(next.run(req).await)
}

fn suffix(mut resp: Response) -> Response {
    if let Some(ct) = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
    {
        // The original appended both; a type that already names its charset keeps just one.
        let v = if ct.contains("charset") {
            format!("{ct};version={API_VERSION}")
        } else {
            format!("{ct};charset=utf-8;version={API_VERSION}")
        };
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
    }
    resp
}

type Shared = State<Arc<Lmp>>;

/// Answers a view as JSON or as its HTML page.
fn respond(lmp: &Lmp, headers: &HeaderMap, page: &str, title: &str, r: ViewResult) -> Response {
    match r {
        Err(e) => error(e.status, e.msg),
        Ok(v) if wants_json(headers) => axum::Json(v).into_response(),
        Ok(v) => {
            let mut ctx = tera::Context::new();
            ctx.insert("data", &v);
            ctx.insert("title", title);
            ctx.insert("api_version", API_VERSION);
            match lmp.pages.render(page, &ctx) {
                Ok(html) => Html(html).into_response(),
                Err(e) => error(500, format!("rendering {page}: {e:?}")),
            }
        }
    }
}

macro_rules! view {
    ($name:ident, $page:expr, $title:expr, |$db:ident| $body:expr) => {
        async fn $name(State(lmp): Shared, headers: HeaderMap) -> Response {
            let r = lmp.read(move |$db| $body).await;
            respond(&lmp, &headers, $page, $title, r)
        }
    };
}

async fn global(State(lmp): Shared, headers: HeaderMap) -> Response {
    let r = lmp.read_recent("global", query::global).await;
    respond(&lmp, &headers, "global.html", "Global memory", r)
}
view!(nodes, "nodes.html", "Nodes", |db| query::nodes(db));
view!(igs, "interleave_groups.html", "Interleave groups", |db| {
    query::interleave_groups(db)
});
view!(directory, "directory.html", "Shelves", |db| query::shelves(
    db
));
view!(all_books, "books.html", "Books", |db| query::books(
    db, None
));

async fn views(State(lmp): Shared, headers: HeaderMap) -> Response {
    if wants_json(&headers) {
        return error(404, "Root view not implemented");
    }
    respond(&lmp, &headers, "views.html", "LMP views", Ok(Value::Null))
}

async fn allocated(State(lmp): Shared, headers: HeaderMap, Path(c): Path<String>) -> Response {
    let r = lmp.read(move |db| query::allocated(db, &c)).await;
    respond(
        &lmp,
        &headers,
        "memory.html",
        "Allocated memory",
        r.map_err(|e| ViewError::new(404, e.msg)),
    )
}

async fn active(State(lmp): Shared, headers: HeaderMap, Path(c): Path<String>) -> Response {
    let r = lmp.read(move |db| query::active(db, &c)).await;
    respond(&lmp, &headers, "memory.html", "Active shelves", r)
}

async fn shelf(State(lmp): Shared, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let r = lmp.read(move |db| query::shelf(db, &name)).await;
    respond(&lmp, &headers, "shelf.html", "Shelf", r)
}

async fn group_books(State(lmp): Shared, headers: HeaderMap, Path(ig): Path<String>) -> Response {
    let Ok(ig) = ig.parse::<i64>() else {
        return error(
            404,
            format!("interleaveGroup \"{ig}\" is not a number: use /lmp/books/<group id>"),
        );
    };
    let r = lmp.read(move |db| query::books(db, Some(ig))).await;
    respond(&lmp, &headers, "books.html", "Books", r)
}

/// The last number (0..100) written to the FIFO, else the previous value.
async fn fabric(State(lmp): Shared) -> Response {
    use std::io::Read;
    let mut f = lmp.fabric.lock().expect("fabric lock");
    let mut buf = [0u8; 1024];
    let n = match f.0.as_mut().map(|p| p.read(&mut buf)) {
        Some(Ok(n)) => n,
        _ => 0,
    };
    if let Some(v) = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.split_whitespace().last()?.parse::<i64>().ok())
        .filter(|v| (0..=100).contains(v))
    {
        f.1 = v;
    }
    axum::Json(json!({"fabric": {"percentage": f.1}})).into_response()
}

async fn dashboard_page(State(lmp): Shared) -> Response {
    let mut ctx = tera::Context::new();
    ctx.insert("title", "FAME dashboard");
    ctx.insert("api_version", API_VERSION);
    match lmp.pages.render("dashboard.html", &ctx) {
        Ok(html) => Html(html).into_response(),
        Err(e) => error(500, format!("rendering the dashboard: {e:?}")),
    }
}

async fn dashboard_data(State(lmp): Shared) -> Response {
    match lmp.read_recent("dashboard", query::dashboard).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(e.status, e.msg),
    }
}

/// Fetches the Librarian's own metrics; says so in the text when it cannot.
fn librarian_metrics(url: &str) -> String {
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(1))
        .build();
    let up = "# HELP lfs_librarian_up 1 if the Librarian's metrics endpoint answered.\n\
              # TYPE lfs_librarian_up gauge\n";
    let text = match agent.get(url).call() {
        Ok(r) => r.into_string().map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match text {
        Ok(text) => format!("{up}lfs_librarian_up 1\n{text}"),
        Err(e) => format!("{up}lfs_librarian_up 0\n# {url}: {e}\n"),
    }
}

async fn metrics(State(lmp): Shared) -> Response {
    let url = lmp.librarian_metrics.clone();
    let r = lmp
        .read_recent("metrics", move |db| {
            let mut text = query::metrics(db)?;
            if let Some(url) = url {
                text.push_str(&librarian_metrics(&url));
            }
            Ok(Value::String(text))
        })
        .await;
    match r {
        Ok(Value::String(text)) => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Body::from(text))
            .unwrap_or_else(|_| error(500, "building the response")),
        Ok(_) => error(500, "metrics are text"),
        Err(e) => error(e.status, e.msg),
    }
}

async fn unknown(req: Request) -> Response {
    error(
        404,
        format!(
            "no such view: {} (see /lmp/ for the list, / for the dashboard, /metrics)",
            req.uri().path()
        ),
    )
}

pub fn router(lmp: Arc<Lmp>) -> Router {
    Router::new()
        .route("/", get(dashboard_page))
        .route("/dashboard.json", get(dashboard_data))
        .route("/metrics", get(metrics))
        .route("/lmp/", get(views))
        .route("/lmp/global/", get(global))
        .route("/lmp/nodes/", get(nodes))
        .route("/lmp/interleaveGroups/", get(igs))
        .route("/lmp/allocated/{*coordinate}", get(allocated))
        .route("/lmp/active/{*coordinate}", get(active))
        .route("/lmp/shelf/", get(directory))
        .route("/lmp/shelf/{name}", get(shelf))
        .route("/lmp/books/", get(all_books))
        .route("/lmp/books/{ig}", get(group_books))
        .route("/fab/", get(fabric))
        .fallback(unknown)
        .layer(middleware::from_fn(versioning))
        .with_state(lmp)
}
