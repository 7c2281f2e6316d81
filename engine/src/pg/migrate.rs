//! Versioned migrations that are safe to re-run and to race.
//!
//! sqlx's own migrator holds a session-level advisory lock, which a transaction-mode pooler
//! cannot keep; here each component's pending migrations run in one transaction under
//! `pg_advisory_xact_lock`, so concurrent starters wait for each other and a failed
//! migration leaves nothing half-applied.

use sqlx::Row;

use super::{PgError, PgStore};

/// One schema change. Versions only grow; an applied version never runs again.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; applied in order.
    pub version: i64,
    /// What it does.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Applies `component`'s migrations that have not run yet. Returns how many ran.
pub async fn migrate(
    store: &PgStore,
    component: &str,
    migrations: &[Migration],
) -> Result<usize, PgError> {
    let mut tx = store.pool().begin().await?;
    // Any fixed key shared by every BrainOps process will do.
    sqlx::raw_sql("SELECT pg_advisory_xact_lock(7263110593)")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS brainops_migrations (
            component  text NOT NULL,
            version    bigint NOT NULL,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (component, version))",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i64> =
        sqlx::query("SELECT version FROM brainops_migrations WHERE component = $1")
            .persistent(false)
            .bind(component)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
    let mut ran = 0;
    for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        let failed = |source| PgError::Migration {
            component: component.to_string(),
            version: m.version,
            name: m.name.to_string(),
            source,
        };
        sqlx::raw_sql(m.sql)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        sqlx::query(
            "INSERT INTO brainops_migrations (component, version, name) VALUES ($1, $2, $3)",
        )
        .persistent(false)
        .bind(component)
        .bind(m.version)
        .bind(m.name)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        ran += 1;
    }
    tx.commit().await?;
    Ok(ran)
}
