//! Helpers shared by the engine's invariant tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::{Graph, LoadError, Registry, loader};

pub(crate) mod pg;

pub(crate) fn load(toml: &str) -> Graph {
    load_with(toml, &Registry::new())
}

pub(crate) fn load_with(toml: &str, registry: &Registry) -> Graph {
    match loader::load_str(toml, "test.toml", registry) {
        Ok(g) => g,
        Err(e) => panic!("graph should load:\n{e}"),
    }
}

pub(crate) fn load_err(toml: &str, registry: &Registry) -> LoadError {
    match loader::load_str(toml, "test.toml", registry) {
        Ok(_) => panic!("graph should not load"),
        Err(e) => e,
    }
}

/// Counts calls per name, to prove which tasks ran.
#[derive(Default, Clone)]
pub(crate) struct CallCounter(pub Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>);

impl CallCounter {
    pub(crate) fn hit(&self, name: &str) {
        *self.0.lock().unwrap().entry(name.to_string()).or_default() += 1;
    }
    pub(crate) fn get(&self, name: &str) -> usize {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

pub(crate) fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

pub(crate) fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}
