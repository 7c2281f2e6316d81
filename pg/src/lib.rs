//! PostgreSQL persistence.
