//! A private database per test, on the server that `scripts/postgres.sh` starts.

use std::sync::atomic::{AtomicU32, Ordering};

/// The server's admin URL: `$DATABASE_URL`, or what `scripts/postgres.sh` prints.
pub(crate) fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into())
}

/// The pooler (PgBouncer in transaction mode) URL: `$DATABASE_POOLER_URL` or the default.
pub(crate) fn pooler_url() -> String {
    std::env::var("DATABASE_POOLER_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:56432/postgres?pgbouncer=true".into())
}

/// Swaps the database name in a URL.
pub(crate) fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base.rfind('/').unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..cut]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Creates an empty database that only this test uses; returns its name.
/// `scripts/test.sh` drops these databases before each run.
pub(crate) async fn fresh_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "brainops_t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..6)
            .unwrap_or("x")
    );
    let admin = admin_url();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {admin} ({e}); start it with `eval \"$(scripts/postgres.sh)\"`")
        });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    name
}
