//! The BrainOps graph runtime.
//!
//! Agent graphs are written in TOML ([`loader`]) or built in Rust ([`GraphBuilder`]),
//! validated into a [`Graph`], and run by a [`Runner`] in bulk-synchronous super-steps
//! ([`pregel`]). State lives in typed channels with reducers ([`channel`]); expressions are
//! CEL ([`expr`]). Every super-step can be checkpointed ([`checkpoint`]) so runs resume after
//! a crash, wait for humans, and can be replayed or forked. Runs report [`Event`]s as a stream.
//!
//! The engine knows nothing of agents or LLMs: tool and agent nodes dispatch to the [`Node`]
//! trait through a [`Registry`] that other crates fill.
//!
//! ```
//! # engine::tokio_test_shim::run(async {
//! use std::sync::Arc;
//! use engine::{loader, Registry, Runner, RunRequest};
//! let graph = loader::load_str(r#"
//!     [graph]
//!     name = "counter"
//!     [state]
//!     count = { type = "integer", default = 0 }
//!     [nodes.bump]
//!     set = { count = "state.count + 1" }
//!     [[edges]]
//!     from = "START"
//!     to = "bump"
//!     [[edges]]
//!     from = "bump"
//!     to = "bump"
//!     when = "state.count < 3"
//!     [[edges]]
//!     from = "bump"
//!     to = "END"
//!     when = "state.count >= 3"
//! "#, "counter.toml", &Registry::new()).unwrap();
//! let outcome = Runner::new(Arc::new(graph)).invoke(RunRequest::new()).await;
//! assert_eq!(outcome.state["count"], 3);
//! # });
//! ```
// Every public item of the library is documented (issue #14); CI denies warnings.
#![warn(missing_docs)]

pub mod channel;
pub mod checkpoint;
pub mod error;
pub mod events;
pub mod expr;
pub mod graph;
pub mod loader;
pub mod node;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod pregel;
pub mod render;
mod state;
pub mod trace;

pub use channel::{ChannelType, Reducer};
#[cfg(feature = "postgres")]
pub use checkpoint::PostgresSaver;
#[cfg(feature = "sqlite")]
pub use checkpoint::SqliteSaver;
pub use checkpoint::{
    CheckpointSource, Checkpointer, InterruptInfo, InterruptKind, MemorySaver, ThreadStatus,
};
pub use error::{Diagnostic, LoadError, RunError};
pub use events::{AgentStep, Event, EventSink, EventStream, IntegrationCall, Progress};
pub use graph::{Graph, GraphBuilder, GraphSpec, NodeSpec, NodeSpecKind, RetryPolicy};
pub use node::{
    AsyncFnNode, FnNode, Goto, Node, NodeContext, NodeError, Outbox, Registry, ToolInfo,
    UsageRecord, UsageSum, UsageTotals, node_async, node_fn, record_usage_here,
};
pub use pregel::{
    CancelToken, RunOutcome, RunRequest, RunStatus, RunStream, Runner, StateSnapshot,
};

#[doc(hidden)]
pub mod tokio_test_shim {
    /// Runs a future to completion on a fresh runtime (for doc examples).
    pub fn run<F: std::future::Future>(f: F) -> F::Output {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(f),
            Err(e) => panic_free_abort(&e.to_string()),
        }
    }

    fn panic_free_abort(message: &str) -> ! {
        eprintln!("cannot start a tokio runtime: {message}");
        std::process::exit(1)
    }
}
