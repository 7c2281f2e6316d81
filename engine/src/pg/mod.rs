//! PostgreSQL (Supabase in production): connections and migrations shared by the Postgres
//! checkpointer and the memory store.
//!
//! - [`PgStore`]: a connection pool that works both directly and through a transaction-mode
//!   pooler (PgBouncer, Supabase's pooler on port 6543), where a server connection is ours
//!   for one transaction only and prepared statements do not survive it; it retries what a
//!   restart or a dropped connection interrupts.
//! - [`migrate`]: versioned migrations, safe to re-run and to run from many processes at once.

mod migrate;

pub use migrate::{Migration, migrate};

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Connection, PgConnection, PgPool, Postgres};

/// How connections reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// A direct connection: statements are prepared once per connection and reused.
    Direct,
    /// Through a pooler in transaction mode: every operation runs in its own transaction
    /// with unnamed statements, so nothing depends on the same server connection later.
    Transaction,
}

/// A Postgres connection failed or answered with an error.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL cannot be parsed.
    #[error("invalid database URL: {0} (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DB)")]
    Url(String),
    /// The server refused a statement or could not be reached.
    #[error("postgres: {}", describe(.0))]
    Sql(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("migration {component} {version} ({name}): {}", describe(.source))]
    Migration {
        /// Whose schema (checkpoints, memory).
        component: String,
        /// The migration's number.
        version: i64,
        /// Its name.
        name: String,
        /// What the server said.
        source: sqlx::Error,
    },
}

/// A pool of connections and the way to use them.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    pooling: Pooling,
    /// How long an operation keeps retrying a lost connection.
    retry_for: Duration,
}

impl PgStore {
    /// Connects to `url`. Transaction pooling is assumed when the URL says `pgbouncer=true`
    /// (the parameter Supabase documents for its pooler) or uses port 6543 (Supabase's
    /// transaction pooler); the parameter is not passed on to the server.
    pub async fn connect(url: &str) -> Result<Self, PgError> {
        let (url, pgbouncer) = strip_pgbouncer_param(url);
        let options =
            PgConnectOptions::from_str(&url).map_err(|e| PgError::Url(redact(&e.to_string())))?;
        let pooling = if pgbouncer || options.get_port() == 6543 {
            Pooling::Transaction
        } else {
            Pooling::Direct
        };
        Self::connect_with(options, pooling).await
    }

    /// Connects with parsed options; `pooling` says whether a transaction pooler is in between.
    pub async fn connect_with(
        options: PgConnectOptions,
        pooling: Pooling,
    ) -> Result<Self, PgError> {
        let options = match pooling {
            Pooling::Direct => options,
            Pooling::Transaction => options.statement_cache_capacity(0),
        };
        // One connection first, so a wrong host, password or database name is reported as
        // what it is, at once, instead of as a pool timeout.
        PgConnection::connect_with(&options).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(PgStore {
            pool,
            pooling,
            retry_for: Duration::from_secs(30),
        })
    }

    /// How long an operation retries a lost connection or a restarting server (30 s).
    pub fn retry_for(mut self, duration: Duration) -> Self {
        self.retry_for = duration;
        self
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Direct, or through a transaction pooler.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether statements may be prepared and kept on the server connection.
    pub fn persistent_statements(&self) -> bool {
        self.pooling == Pooling::Direct
    }

    /// Runs one statement and returns its rows, retrying from scratch when the connection
    /// drops or the server restarts (for up to `retry_for`). Through a pooler the statement
    /// runs inside its own transaction, so its parse, bind and execute stay on one server
    /// connection. `make` builds the statement anew for each attempt.
    pub async fn fetch<'q, F>(&self, make: F) -> Result<Vec<PgRow>, sqlx::Error>
    where
        F: Fn() -> Query<'q, Postgres, PgArguments>,
    {
        self.retrying(|| async {
            let query = make().persistent(self.persistent_statements());
            match self.pooling {
                Pooling::Direct => query.fetch_all(&self.pool).await,
                Pooling::Transaction => {
                    let mut tx = self.pool.begin().await?;
                    let rows = query.fetch_all(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(rows)
                }
            }
        })
        .await
    }

    /// Runs `op`, retrying it when the connection drops or the server restarts.
    pub async fn retrying<T, F, Fut>(&self, op: F) -> Result<T, sqlx::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            match op().await {
                Err(e) if is_transient(&e) && started.elapsed() < self.retry_for => {
                    tracing::warn!("postgres unavailable, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }
}

/// Errors that a later attempt may not meet: a lost connection, a restarting server, a
/// serialization failure.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") // connection exception
                || code == "57P01" // admin_shutdown
                || code == "57P02" // crash_shutdown
                || code == "57P03" // cannot_connect_now
                || code == "40001" // serialization_failure
                || code == "40P01" // deadlock_detected
        }),
        _ => false,
    }
}

fn strip_pgbouncer_param(url: &str) -> (String, bool) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), false);
    };
    let mut pgbouncer = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key == "pgbouncer" {
                pgbouncer = value != "false" && value != "0";
                false
            } else {
                true
            }
        })
        .collect();
    if kept.is_empty() {
        (base.to_string(), pgbouncer)
    } else {
        (format!("{base}?{}", kept.join("&")), pgbouncer)
    }
}

/// A database error as a user can act on it: the server's message, detail and hint, and
/// the SQLSTATE code. sqlx's own text ends in "at line 948", a line of the server's C
/// source, which only confuses. Passwords are redacted.
pub fn describe(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        {
            Some(pg) => {
                let mut text = pg.message().to_string();
                if let Some(detail) = pg.detail() {
                    text.push_str(&format!(" ({detail})"));
                }
                if let Some(hint) = pg.hint() {
                    text.push_str(&format!("; hint: {hint}"));
                }
                text.push_str(&format!(" [SQLSTATE {}]", pg.code()));
                text
            }
            None => db.message().to_string(),
        },
        other => other.to_string(),
    };
    redact(&text)
}

/// Hides passwords in text that may quote a URL: the one in `user:password@`, and the
/// values of `password=` parameters (a URL's query or a key=value connection string).
/// Placeholders such as `USER[:PASSWORD]@HOST` in help texts are left as they are.
pub fn redact(text: &str) -> String {
    redact_params(&redact_userinfo(text))
}

fn redact_params(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    let mut search = 0;
    while let Some(i) = lower[search..].find("password=") {
        let start = search + i + "password=".len();
        let end = text[start..]
            .find(|c: char| c == '&' || c == '\'' || c == '"' || c.is_whitespace())
            .map_or(text.len(), |e| start + e);
        out.push_str(&text[from..start]);
        if end > start {
            out.push_str("***");
        }
        from = end;
        search = end.max(start);
    }
    out.push_str(&text[from..]);
    out
}

fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at && !authority[..at].contains('[') => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_every_form_and_placeholders_kept() {
        assert_eq!(
            redact("cannot connect to postgres://u:s3cret@h:5432/db: refused"),
            "cannot connect to postgres://u:***@h:5432/db: refused"
        );
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=s3cret&x=1 failed"),
            "postgres://u@h/db?sslmode=require&password=***&x=1 failed"
        );
        assert_eq!(
            redact("host=h user=u PASSWORD=s3cret dbname=d"),
            "host=h user=u PASSWORD=*** dbname=d"
        );
        let help = "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DB";
        assert_eq!(redact(help), help);
        assert!(!redact("postgres://h/db?password=a%40b").contains("a%40b"));
    }

    #[test]
    fn pgbouncer_param_is_detected_and_removed() {
        let (url, on) =
            strip_pgbouncer_param("postgres://u@h:6543/db?pgbouncer=true&sslmode=require");
        assert!(on);
        assert_eq!(url, "postgres://u@h:6543/db?sslmode=require");
        let (url, on) = strip_pgbouncer_param("postgres://u@h/db?pgbouncer=true");
        assert!(on);
        assert_eq!(url, "postgres://u@h/db");
        assert!(!strip_pgbouncer_param("postgres://u@h/db").1);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("cannot reach postgres://app:s3cret@db.example:5432/x now"),
            "cannot reach postgres://app:***@db.example:5432/x now"
        );
        assert_eq!(redact("postgres://app@h/x"), "postgres://app@h/x");
    }
}
