//! Long-term memory for agents (namespaced items, semantic and keyword search).
//!
//! Not built yet: the Postgres + pgvector store, the embedded store and the embedders arrive
//! with the memory issue. The crate exists so the workspace layout is final.
