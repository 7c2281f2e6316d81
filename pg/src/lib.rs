//! PostgreSQL persistence for BrainOps (production runs on Supabase).
//!
//! - [`PgStore`]: a connection pool that works both directly and through a transaction-mode
//!   pooler (PgBouncer, Supabase's pooler on port 6543), where a server connection is ours
//!   for one transaction only and prepared statements do not survive it.
//! - [`migrate`]: versioned migrations, safe to re-run and to run from many processes at once.
//! - [`PostgresSaver`]: the durable checkpointer, storing each checkpoint as the channels it
//!   changed.

mod checkpoint;
mod migrate;
mod store;

pub use checkpoint::PostgresSaver;
pub use migrate::{Migration, migrate};
pub use store::{PgError, PgStore, Pooling, redact};
