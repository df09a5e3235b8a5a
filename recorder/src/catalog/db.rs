//! One SQL interface over both catalog backends: SQLite (rusqlite, a file in `data_dir`) and
//! PostgreSQL (the `postgres` client). Statements are written once, with `?N` parameters;
//! PostgreSQL gets them as `$N`, and `instr(a, b)` as `strpos(a, b)`. Values are integers, text
//! or null: every integer column is 64-bit on both, booleans are 0/1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::error::{RecorderError, Result};

fn lite_err(e: rusqlite::Error) -> RecorderError {
    RecorderError::Catalog(e.to_string())
}

fn pg_err(e: postgres::Error) -> RecorderError {
    // The server's own message (constraint, syntax, connection) says more than the wrapper.
    match e.as_db_error() {
        Some(db) => RecorderError::Catalog(format!("postgres: {}", db.message())),
        None => RecorderError::Catalog(format!("postgres: {e}")),
    }
}

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// Parameters from a list of values of mixed types.
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::catalog::db::Val::from($v)),*][..] };
}
pub(crate) use args;

/// One result row.
#[derive(Debug)]
pub(crate) struct Row(Vec<Val>);

impl Row {
    fn at(&self, i: usize) -> Result<&Val> {
        self.0
            .get(i)
            .ok_or_else(|| RecorderError::Catalog(format!("no column {i}")))
    }
    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| RecorderError::Catalog(format!("column {i} is null")))
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Val::Int(v) => Ok(Some(*v)),
            Val::Null => Ok(None),
            Val::Text(t) => Err(RecorderError::Catalog(format!(
                "column {i}: text {t:?} where an integer was expected"
            ))),
        }
    }
    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| RecorderError::Catalog(format!("column {i} is null")))
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Val::Text(t) => Ok(Some(t.clone())),
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(v.to_string())),
        }
    }
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(v) => match *ty {
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Val::Text(s) => s.to_sql(ty, out),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// Where the catalog lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite(PathBuf),
    /// A `postgres://` URL (libpq's key=value form works too).
    Postgres(String),
}

impl Backend {
    /// `sqlite://PATH` (relative paths are under `data_dir`), `postgres://...` or
    /// `postgresql://...`; none: `<data_dir>/catalog.sqlite`.
    pub fn from_url(url: Option<&str>, data_dir: &Path) -> Result<Backend> {
        let Some(url) = url else {
            return Ok(Backend::Sqlite(data_dir.join("catalog.sqlite")));
        };
        if let Some(p) = url.strip_prefix("sqlite://") {
            if p.is_empty() {
                return Err(RecorderError::Catalog(
                    "catalog url sqlite:// needs a path".into(),
                ));
            }
            return Ok(Backend::Sqlite(data_dir.join(p)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.parse::<postgres::Config>().map_err(|e| {
                RecorderError::Catalog(format!("catalog url: not a PostgreSQL URL: {e}"))
            })?;
            return Ok(Backend::Postgres(url.to_string()));
        }
        Err(RecorderError::Catalog(format!(
            "catalog url must start with sqlite:// or postgres:// (got {:?})",
            url.split("://").next().unwrap_or(url)
        )))
    }

    /// The URL without its password, for logs and `/healthz`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Sqlite(p) => format!("sqlite://{}", p.display()),
            Backend::Postgres(u) => match u.parse::<url_lite::Url>() {
                Ok(u) => u.redacted(),
                Err(()) => "postgres://(unparsed)".into(),
            },
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }

    pub(crate) fn connect(&self) -> Result<Conn> {
        match self {
            Backend::Sqlite(path) => open_sqlite(path).map(Conn::Lite),
            Backend::Postgres(url) => {
                let url = url.clone();
                off_runtime(move || {
                    let client =
                        postgres::Client::connect(&url, postgres::NoTls).map_err(pg_err)?;
                    Ok(Conn::Pg(Box::new(PgConn {
                        client: Some(client),
                        cache: HashMap::new(),
                    })))
                })
            }
        }
    }
}

/// Just enough URL handling to hide a password.
mod url_lite {
    pub struct Url(String);
    impl std::str::FromStr for Url {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            s.contains("://").then(|| Url(s.to_string())).ok_or(())
        }
    }
    impl Url {
        pub fn redacted(&self) -> String {
            let (scheme, rest) = self.0.split_once("://").unwrap_or(("", &self.0));
            match rest.split_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split(':').next().unwrap_or("");
                    format!("{scheme}://{user}@{host}")
                }
                None => self.0.clone(),
            }
        }
    }
}

fn open_sqlite(path: &Path) -> Result<rusqlite::Connection> {
    // SQLite creates the database, its WAL and shared-memory files with the process umask;
    // pre-creating the database owner-only keeps session records private whatever it is
    // (the -wal and -shm files take the database file's mode).
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| RecorderError::io(path, e))?;
    }
    let c = rusqlite::Connection::open(path).map_err(lite_err)?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(lite_err)?;
    Ok(c)
}

/// Runs `f` where the blocking PostgreSQL client may run: that client drives its own runtime,
/// which cannot start on a thread inside tokio's (an async handler; tokio gives no way to tell
/// its blocking pool apart). Those callers get a scoped thread, a few microseconds beside a
/// round trip to the server; the catalog's own threads run `f` directly.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    })
}

pub(crate) struct PgConn {
    /// Always present until dropped (see `Drop`).
    client: Option<postgres::Client>,
    /// Prepared statements by their `?N` text (one round trip saved per repeated query).
    cache: HashMap<String, postgres::Statement>,
}

impl PgConn {
    fn client(&mut self) -> Result<&mut postgres::Client> {
        self.client
            .as_mut()
            .ok_or_else(|| RecorderError::Catalog("postgres: connection closed".into()))
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let st = self.client()?.prepare(&to_postgres(sql)).map_err(pg_err)?;
        if self.cache.len() > 256 {
            self.cache.clear();
        }
        self.cache.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // Closing talks to the server through the client's own runtime: not on a thread of
        // tokio's (a catalog dropped at the end of `main`'s runtime, say).
        if let Some(c) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new()
                .name("catalog-close".into())
                .spawn(move || drop(c));
        }
    }
}

/// `?N` → `$N`, `instr(` → `strpos(` (outside string literals).
pub(crate) fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut in_str = false;
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c == '\'' {
            in_str = !in_str;
        }
        if !in_str && c == '?' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            out.push('$');
        } else if !in_str && sql[i..].starts_with("instr(") {
            out.push_str("strpos(");
            i += "instr(".len();
            continue;
        } else {
            out.push(c);
        }
        i += c.len_utf8();
    }
    out
}

/// A connection to either backend.
pub(crate) enum Conn {
    Lite(rusqlite::Connection),
    Pg(Box<PgConn>),
}

impl Conn {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }

    /// Whether the connection can be used again (PostgreSQL: the server did not drop it).
    pub fn is_usable(&self) -> bool {
        match self {
            Conn::Lite(_) => true,
            Conn::Pg(p) => p.client.as_ref().is_some_and(|c| !c.is_closed()),
        }
    }

    /// Several statements without parameters.
    pub fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Conn::Lite(c) => c.execute_batch(sql).map_err(lite_err),
            Conn::Pg(p) => p.client()?.batch_execute(sql).map_err(pg_err),
        }
    }

    /// One statement; the number of rows it changed.
    pub fn exec(&mut self, sql: &str, args: &[Val]) -> Result<u64> {
        match self {
            Conn::Lite(c) => {
                let mut st = c.prepare_cached(sql).map_err(lite_err)?;
                st.execute(rusqlite::params_from_iter(args.iter().map(lite_val)))
                    .map(|n| n as u64)
                    .map_err(lite_err)
            }
            Conn::Pg(p) => {
                let st = p.statement(sql)?;
                let params: Vec<&(dyn ToSql + Sync)> =
                    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                p.client()?.execute(&st, &params).map_err(pg_err)
            }
        }
    }

    pub fn query(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        match self {
            Conn::Lite(c) => {
                let mut st = c.prepare_cached(sql).map_err(lite_err)?;
                let n = st.column_count();
                let mut rows = st
                    .query(rusqlite::params_from_iter(args.iter().map(lite_val)))
                    .map_err(lite_err)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(lite_err)? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(match r.get_ref(i).map_err(lite_err)? {
                            rusqlite::types::ValueRef::Null => Val::Null,
                            rusqlite::types::ValueRef::Integer(v) => Val::Int(v),
                            rusqlite::types::ValueRef::Real(v) => Val::Int(v as i64),
                            rusqlite::types::ValueRef::Text(t)
                            | rusqlite::types::ValueRef::Blob(t) => {
                                Val::Text(String::from_utf8_lossy(t).into_owned())
                            }
                        });
                    }
                    out.push(Row(vals));
                }
                Ok(out)
            }
            Conn::Pg(p) => {
                let st = p.statement(sql)?;
                let params: Vec<&(dyn ToSql + Sync)> =
                    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                let rows = p.client()?.query(&st, &params).map_err(pg_err)?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    pub fn query_opt(&mut self, sql: &str, args: &[Val]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Runs `f` in one transaction: committed if it returns `Ok`, rolled back otherwise.
    pub fn tx<T>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.batch("BEGIN")?;
        match f(self) {
            Ok(v) => {
                if let Err(e) = self.batch("COMMIT") {
                    let _ = self.batch("ROLLBACK");
                    return Err(e);
                }
                Ok(v)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The PostgreSQL client, for what only it has (LISTEN/NOTIFY).
    pub fn postgres(&mut self) -> Option<&mut postgres::Client> {
        match self {
            Conn::Pg(p) => p.client.as_mut(),
            Conn::Lite(_) => None,
        }
    }

    /// The SQLite connection, for what only it has (PRAGMAs).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match self {
            Conn::Lite(c) => Some(c),
            Conn::Pg(_) => None,
        }
    }
}

fn lite_val(v: &Val) -> rusqlite::types::Value {
    match v {
        Val::Null => rusqlite::types::Value::Null,
        Val::Int(i) => rusqlite::types::Value::Integer(*i),
        Val::Text(t) => rusqlite::types::Value::Text(t.clone()),
    }
}

fn pg_row(r: &postgres::Row) -> Result<Row> {
    let mut vals = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Val::Int)),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Val::Int(i64::from(v)))),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Val::Int(i64::from(v)))),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Val::Int(i64::from(v)))),
            _ => r.try_get::<_, Option<String>>(i).map(|v| v.map(Val::Text)),
        }
        .map_err(pg_err)?;
        vals.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(vals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_rewritten_for_postgres_outside_literals() {
        assert_eq!(
            to_postgres("SELECT id FROM t WHERE a = ?1 AND instr(p, ?2) > 0 AND q = '?3 instr('"),
            "SELECT id FROM t WHERE a = $1 AND strpos(p, $2) > 0 AND q = '?3 instr('"
        );
    }

    #[test]
    fn urls_choose_the_backend_and_hide_passwords() {
        let d = Path::new("/d");
        assert_eq!(
            Backend::from_url(None, d).unwrap(),
            Backend::Sqlite("/d/catalog.sqlite".into())
        );
        assert_eq!(
            Backend::from_url(Some("sqlite://c.db"), d).unwrap(),
            Backend::Sqlite("/d/c.db".into())
        );
        let pg = Backend::from_url(Some("postgres://tg:s3cret@db:5432/tg"), d).unwrap();
        assert!(pg.is_postgres());
        assert_eq!(pg.describe(), "postgres://tg@db:5432/tg");
        let e = Backend::from_url(Some("mysql://x"), d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sqlite:// or postgres://"), "{e}");
    }
}
