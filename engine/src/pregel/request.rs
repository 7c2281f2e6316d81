//! What a run is asked to do and what it reports: requests, statuses, outcomes, snapshots,
//! and a run streaming on its own task.

use super::*;

/// Cancels a run from another task.
#[derive(Clone, Default, Debug)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the run: its in-flight tasks are dropped and it fails with `Cancelled`.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether `cancel` was called.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    pub(super) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// What to run: a new run with `input`, a resume with `resume`, or (neither) the
/// continuation of a thread whose last run did not finish.
#[derive(Clone, Default, Debug)]
pub struct RunRequest {
    /// The thread (a new id when `None`).
    pub thread_id: Option<String>,
    /// The input of a new run: a JSON object of channel writes.
    pub input: Option<Value>,
    /// The answer to the question an interrupted thread waits on.
    pub resume: Option<Value>,
    /// Answers to several waiting questions at once (parallel interrupts), by task
    /// (`InterruptInfo::task`); LangGraph's `Command(resume={id: value, ...})`.
    pub resume_each: Vec<(String, Value)>,
    /// A token that cancels the run.
    pub cancel: Option<CancelToken>,
    /// Take the thread over even while another run's lease on it is live (use when that
    /// run's process is known to be gone).
    pub takeover: bool,
    /// Send [`Event::Values`](crate::Event::Values), the whole state, after the input and
    /// after every step (a server's `values` stream mode). Off by default: it copies the
    /// state once per step.
    pub emit_values: bool,
    /// Send the events of subgraph runs too, as [`Event::Subgraph`](crate::Event::Subgraph).
    pub stream_subgraphs: bool,
    /// Pause before these nodes in this run, as `interrupt = "before"` would (`*`: all).
    pub interrupt_before: Vec<String>,
    /// Pause after these nodes in this run, as `interrupt = "after"` would (`*`: all).
    pub interrupt_after: Vec<String>,
    /// Routes for the next step (LangGraph's `Command(goto=...)`): with `resume`, they
    /// join the resumed step; without, the run starts at them from the thread's state.
    pub goto: Vec<crate::node::Goto>,
    /// Channel writes applied before the run goes on (LangGraph's `Command(update=...)`),
    /// through the reducers; with `resume`, before the resumed step.
    pub update: Option<Value>,
    /// This run's limit on super-steps, instead of the graph's `recursion_limit`
    /// (LangGraph's `config["recursion_limit"]`). A subgraph keeps its own.
    pub recursion_limit: Option<u32>,
    /// Read-only values for this run (LangGraph's runtime `context`, or
    /// `config["configurable"]`): `context.NAME` in expressions,
    /// [`NodeContext::context`](crate::NodeContext::context) in Rust nodes. Not
    /// checkpointed: give it again when resuming. Subgraph runs inherit it.
    pub context: Option<Value>,
}

impl RunRequest {
    /// A request to continue a thread (add `input` or `resume`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs on thread `id`.
    pub fn thread(mut self, id: impl Into<String>) -> Self {
        self.thread_id = Some(id.into());
        self
    }

    /// Starts with `input`.
    pub fn input(mut self, input: Value) -> Self {
        self.input = Some(input);
        self
    }

    /// Answers the interrupt with `value`.
    pub fn resume(mut self, value: Value) -> Self {
        self.resume = Some(value);
        self
    }

    /// Answers several waiting questions at once: `(task, value)` pairs.
    pub fn resume_each(mut self, answers: impl IntoIterator<Item = (String, Value)>) -> Self {
        self.resume_each = answers.into_iter().collect();
        self
    }

    /// Cancellable with `token`.
    pub fn cancel_with(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Takes the thread over from a run whose process is gone.
    pub fn takeover(mut self, takeover: bool) -> Self {
        self.takeover = takeover;
        self
    }

    /// Routes the next step to `goto` (see [`RunRequest::goto`]).
    pub fn goto(mut self, goto: crate::node::Goto) -> Self {
        self.goto.push(goto);
        self
    }

    /// Applies `update` before the run goes on (see [`RunRequest::update`]).
    pub fn update(mut self, update: Value) -> Self {
        self.update = Some(update);
        self
    }

    /// Limits this run to `limit` super-steps (see [`RunRequest::recursion_limit`]).
    pub fn recursion_limit(mut self, limit: u32) -> Self {
        self.recursion_limit = Some(limit);
        self
    }

    /// Gives the run `context` (see [`RunRequest::context`]).
    pub fn context(mut self, context: Value) -> Self {
        self.context = Some(context);
        self
    }

    /// Sends the whole state after the input and after every step.
    pub fn emit_values(mut self, on: bool) -> Self {
        self.emit_values = on;
        self
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// It reached END.
    Done,
    /// It waits for an answer.
    Interrupted,
    /// It failed (see the outcome's `error`).
    Failed,
}

impl RunStatus {
    /// The word printed for it: `done`, `interrupted` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Done => "done",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
}

/// A status equals the word printed for it.
impl PartialEq<str> for RunStatus {
    fn eq(&self, word: &str) -> bool {
        self.as_str() == word
    }
}

/// The result of a run: its status, the thread's state, and what it waits for or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutcome {
    /// How it ended.
    pub status: RunStatus,
    /// The thread.
    pub thread_id: String,
    /// The thread's state: the last committed one, plus a waiting step's finished writes at an interrupt.
    pub state: Value,
    /// What it waits for, when interrupted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupt: Option<InterruptInfo>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunErrorView>,
    /// The thread's latest checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_id: Option<u64>,
    /// Super-steps executed by this run.
    pub steps: u64,
    /// Tokens and cost the run's nodes reported, in all and per node.
    #[serde(skip_serializing_if = "UsageTotals::is_empty")]
    pub usage: UsageTotals,
}

/// A run error as reported in outcomes and on the CLI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunErrorView {
    /// The error as one line.
    pub message: String,
    /// The error with its fields.
    pub detail: RunError,
}

impl RunOutcome {
    /// The state, or the error when the run failed.
    pub fn into_result(self) -> Result<RunOutcome, RunError> {
        match &self.error {
            Some(e) if self.status == RunStatus::Failed => Err(e.detail.clone()),
            _ => Ok(self),
        }
    }

    /// A channel's value in the final state.
    pub fn get(&self, channel: &str) -> Option<&Value> {
        self.state.get(channel)
    }
}

/// The state of a thread at a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateSnapshot {
    /// The thread.
    pub thread_id: String,
    /// The checkpoint read.
    pub checkpoint_id: Option<u64>,
    /// Its super-step.
    pub step: u64,
    /// The state.
    pub values: Value,
    /// The nodes that run next.
    pub next: Vec<String>,
    /// The thread's status (for its latest checkpoint).
    pub status: Option<ThreadStatus>,
    /// What it waits for, when interrupted.
    pub interrupt: Option<InterruptInfo>,
}

/// A run in progress on its own task: its events, as a `futures` `Stream` or with
/// [`next`](RunStream::next), then its [`outcome`](RunStream::outcome).
#[derive(Debug)]
pub struct RunStream {
    pub(super) events: EventStream,
    pub(super) task: tokio::task::JoinHandle<RunOutcome>,
    pub(super) thread_id: Option<String>,
}

impl RunStream {
    /// The next event; `None` once the run has ended and every event was read.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.next().await
    }

    /// Waits for the run to end and returns its outcome (events not read are dropped).
    pub async fn outcome(self) -> RunOutcome {
        match self.task.await {
            Ok(outcome) => outcome,
            // The run's task panicked (a bug) or the runtime is shutting down.
            Err(e) => {
                let detail = RunError::Thread {
                    message: format!("the run's task stopped: {e}"),
                };
                RunOutcome {
                    status: RunStatus::Failed,
                    thread_id: self.thread_id.unwrap_or_default(),
                    state: Value::Null,
                    interrupt: None,
                    error: Some(RunErrorView {
                        message: detail.to_string(),
                        detail,
                    }),
                    checkpoint_id: None,
                    steps: 0,
                    usage: UsageTotals::default(),
                }
            }
        }
    }
}

impl futures_core::Stream for RunStream {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        std::pin::Pin::new(&mut self.events).poll_next(cx)
    }
}
