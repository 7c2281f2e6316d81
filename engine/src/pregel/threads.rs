//! Thread administration on a runner: read state and history, edit state, prune, fork.

use super::*;

impl Runner {
    /// The thread's state at `checkpoint` (the latest when `None`).
    pub async fn state(
        &self,
        thread_id: &str,
        checkpoint: Option<u64>,
    ) -> Result<StateSnapshot, RunError> {
        let saver = self.saver()?;
        let info = saver.thread(thread_id).await.map_err(cp_err)?;
        let chain = saver.chain(thread_id, checkpoint).await.map_err(cp_err)?;
        let Some(last) = chain.last() else {
            return Err(RunError::Thread {
                message: missing_thread(thread_id, checkpoint),
            });
        };
        if let Some(c) = checkpoint
            && last.id != c
        {
            return Err(RunError::Thread {
                message: missing_thread(thread_id, checkpoint),
            });
        }
        let mut state = State::rebuild(&self.graph, &chain)
            .map_err(|message| RunError::Checkpoint { message })?;
        if checkpoint.is_none()
            && info
                .as_ref()
                .is_some_and(|i| i.status == ThreadStatus::Interrupted)
        {
            let pending = saver.writes(thread_id, last.id).await.map_err(cp_err)?;
            fold_pending(&self.graph, &mut state, pending);
        }
        Ok(StateSnapshot {
            thread_id: thread_id.into(),
            checkpoint_id: Some(last.id),
            step: last.step,
            values: state.to_json(),
            next: last
                .next
                .iter()
                .cloned()
                .chain(last.sends.iter().map(|s| s.node.clone()))
                .collect(),
            status: info.as_ref().map(|i| i.status),
            interrupt: info.and_then(|i| i.interrupt),
        })
    }

    /// Every checkpoint of a thread, oldest first.
    pub async fn history(&self, thread_id: &str) -> Result<Vec<CheckpointSummary>, RunError> {
        self.saver()?.list(thread_id).await.map_err(cp_err)
    }

    /// Applies `values` (channel → write, through reducers) as a new checkpoint on the thread.
    pub async fn update_state(&self, thread_id: &str, values: &Value) -> Result<u64, RunError> {
        self.update_state_as(thread_id, values, None).await
    }

    /// Applies `values` as if node `as_node` had written them (LangGraph's
    /// `update_state(..., as_node=...)`): the writes go through the reducers and stand for
    /// the step the thread was about to run; it goes on from that node's outgoing edges,
    /// evaluated on the updated state (and the joins the node completes). A question the
    /// thread waited on is dropped; a
    /// breakpoint it stopped at is passed by the next run. `None` is
    /// [`Runner::update_state`]: the thread goes on where it was.
    pub async fn update_state_as(
        &self,
        thread_id: &str,
        values: &Value,
        as_node: Option<&str>,
    ) -> Result<u64, RunError> {
        let as_node = self.as_node(as_node)?;
        let saver = self.saver()?;
        if saver.thread(thread_id).await.map_err(cp_err)?.is_none() {
            return Err(RunError::Thread {
                message: missing_thread(thread_id, None),
            });
        }
        let lease = Lease::new(self.lease_ms);
        let info = acquire(saver, thread_id, &self.graph.name, &lease, false)
            .await
            .map_err(cp_err)?;
        let result = self
            .update_owned(saver, thread_id, values, as_node, &lease)
            .await;
        // Written as a node, the update is an answer of its own: the thread no longer
        // waits on its question (a breakpoint stays, so the next run passes it).
        let drop_question = as_node.is_some()
            && info.status == ThreadStatus::Interrupted
            && info
                .interrupt
                .as_ref()
                .is_some_and(|i| matches!(i.kind, InterruptKind::Ask | InterruptKind::Wait));
        let mut info = info;
        if drop_question && result.is_ok() {
            info.status = ThreadStatus::Idle;
            info.interrupt = None;
        }
        release_lease(saver, info, &lease).await?;
        result
    }

    /// Gives a thread with no checkpoint its first one, as LangGraph's `update_state` does
    /// on an empty thread: `values` folded over the channels' defaults (through their
    /// reducers), and no node runs. The thread goes on where START leads (its conditions
    /// evaluated on the written state) or, with `as_node`, from that node's outgoing edges.
    /// A thread not yet stored is created, idle. Fails when the thread already has state:
    /// [`Runner::update_state_as`] updates that. Returns the checkpoint's id.
    pub async fn create_state(
        &self,
        thread_id: &str,
        values: &Value,
        as_node: Option<&str>,
    ) -> Result<u64, RunError> {
        let as_node = self.as_node(as_node)?;
        let saver = self.saver()?;
        // Refused values leave no thread record behind: checked before the lease is taken.
        let record = self.first_checkpoint(thread_id, values, as_node)?;
        let lease = Lease::new(self.lease_ms);
        let info = acquire(saver, thread_id, &self.graph.name, &lease, false)
            .await
            .map_err(cp_err)?;
        let result = async {
            if !saver.list(thread_id).await.map_err(cp_err)?.is_empty() {
                return Err(RunError::Thread {
                    message: format!(
                        "thread `{thread_id}` already has state; update it (update_state) instead of creating it"
                    ),
                });
            }
            saver.put(&record, Some(&lease)).await.map_err(cp_err)?;
            Ok(record.id)
        }
        .await;
        release_lease(saver, settled_if(info, result.is_ok()), &lease).await?;
        result
    }

    /// A thread's first checkpoint: `values` folded over the channels' defaults.
    fn first_checkpoint(
        &self,
        thread_id: &str,
        values: &Value,
        as_node: Option<NodeId>,
    ) -> Result<CheckpointRecord, RunError> {
        let mut state = State::new(&self.graph);
        let deltas = apply_input(&self.graph, &mut state, values.clone(), "update", true)?;
        let (nodes, next, joins) = match as_node {
            None => {
                let targets = self.targets(&self.graph.start, "START", &state)?;
                (Vec::new(), self.names(&targets), Vec::new())
            }
            Some(n) => {
                let (next, joins) = self.successors(n, &state, &[])?;
                let name = self.graph.nodes[n as usize].name.to_string();
                (vec![name], next, joins)
            }
        };
        let record = CheckpointRecord {
            thread_id: thread_id.into(),
            id: 0,
            parent: None,
            step: 0,
            source: CheckpointSource::Update,
            nodes,
            deltas,
            snapshot: None,
            next,
            sends: Vec::new(),
            joins,
            created_at_ms: now_ms(),
        };
        Ok(record)
    }

    /// Resolves an `as_node` name.
    fn as_node(&self, as_node: Option<&str>) -> Result<Option<NodeId>, RunError> {
        match as_node {
            None => Ok(None),
            Some(name) => Ok(Some(self.graph.node_id(name).ok_or_else(|| {
                RunError::Input {
                    message: format!(
                        "as_node: graph `{}` has no node `{name}`; give one of its nodes, or none to keep the thread where it is",
                        self.graph.name
                    ),
                }
            })?)),
        }
    }

    /// Moves the thread's head back to `checkpoint`: a new checkpoint (source `fork`) holds
    /// the state and the next nodes as they were there, so a run without input replays from
    /// it and a run with input starts a new run on that state. Returns the new checkpoint.
    pub async fn rewind(&self, thread_id: &str, checkpoint: u64) -> Result<u64, RunError> {
        let saver = self.saver()?;
        let lease = Lease::new(self.lease_ms);
        let info = acquire(saver, thread_id, &self.graph.name, &lease, false)
            .await
            .map_err(cp_err)?;
        let result = async {
            let head = saver.chain(thread_id, None).await.map_err(cp_err)?;
            let chain = saver
                .chain(thread_id, Some(checkpoint))
                .await
                .map_err(cp_err)?;
            let (Some(head), Some(at)) = (head.last(), chain.last().filter(|c| c.id == checkpoint))
            else {
                return Err(RunError::Thread {
                    message: missing_thread(thread_id, Some(checkpoint)),
                });
            };
            let state = State::rebuild(&self.graph, &chain)
                .map_err(|message| RunError::Checkpoint { message })?;
            let record = CheckpointRecord {
                thread_id: thread_id.into(),
                id: head.id + 1,
                parent: Some(head.id),
                step: at.step,
                source: CheckpointSource::Fork,
                nodes: Vec::new(),
                deltas: Vec::new(),
                snapshot: Some(state.to_map()),
                next: at.next.clone(),
                sends: at.sends.clone(),
                joins: at.joins.clone(),
                created_at_ms: now_ms(),
            };
            saver.put(&record, Some(&lease)).await.map_err(cp_err)?;
            Ok(record.id)
        }
        .await;
        release_lease(saver, settled_if(info, result.is_ok()), &lease).await?;
        result
    }

    async fn update_owned(
        &self,
        saver: &dyn Checkpointer,
        thread_id: &str,
        values: &Value,
        as_node: Option<NodeId>,
        lease: &Lease,
    ) -> Result<u64, RunError> {
        let chain = saver.chain(thread_id, None).await.map_err(cp_err)?;
        let Some(last) = chain.last() else {
            return Err(RunError::Thread {
                message: missing_thread(thread_id, None),
            });
        };
        let mut state = State::rebuild(&self.graph, &chain)
            .map_err(|message| RunError::Checkpoint { message })?;
        let deltas = apply_input(&self.graph, &mut state, values.clone(), "update", true)?;
        let (nodes, next, sends, joins) = match as_node {
            None => (
                Vec::new(),
                last.next.clone(),
                last.sends.clone(),
                last.joins.clone(),
            ),
            Some(n) => {
                // As in LangGraph 1.2: the update stands for the step that was pending, so
                // none of its nodes runs any more; the node's successors run next.
                let (next, joins) = self.successors(n, &state, &last.joins)?;
                let name = self.graph.nodes[n as usize].name.to_string();
                (vec![name], next, Vec::new(), joins)
            }
        };
        let record = CheckpointRecord {
            thread_id: thread_id.into(),
            id: last.id + 1,
            parent: Some(last.id),
            step: last.step,
            source: CheckpointSource::Update,
            nodes,
            deltas,
            snapshot: None,
            next,
            sends,
            joins,
            created_at_ms: now_ms(),
        };
        saver.put(&record, Some(lease)).await.map_err(cp_err)?;
        Ok(record.id)
    }

    /// Where the thread goes after node `n` wrote `state`: its edges' targets (conditions
    /// evaluated as a run would, the default when none holds) and the joins it completes,
    /// with the joins' progress after it.
    fn successors(
        &self,
        n: NodeId,
        state: &State,
        joins: &[JoinProgress],
    ) -> Result<(Vec<String>, Vec<JoinProgress>), RunError> {
        let graph = &*self.graph;
        let node = &graph.nodes[n as usize];
        let mut targets = self.targets(&node.routes, &node.name, state)?;
        let mut progress = joins.to_vec();
        for &j in &node.joins {
            let def = &graph.joins[j as usize];
            let at = match progress.iter().position(|p| p.join == j) {
                Some(at) => at,
                None => {
                    progress.push(JoinProgress {
                        join: j,
                        seen: Vec::new(),
                    });
                    progress.len() - 1
                }
            };
            if !progress[at].seen.iter().any(|s| **s == *node.name) {
                progress[at].seen.push(node.name.to_string());
            }
            let complete = def.sources.iter().all(|&src| {
                let name = &graph.nodes[src as usize].name;
                progress[at].seen.iter().any(|s| **s == **name)
            });
            if complete {
                progress.remove(at);
                targets.push(def.to);
            }
        }
        Ok((self.names(&targets), progress))
    }

    /// Where `routes` lead on `state`: the unconditional edges, the conditions that hold, and
    /// the default when none does.
    fn targets(&self, routes: &Routes, from: &str, state: &State) -> Result<Vec<Target>, RunError> {
        let mut targets: Vec<Target> = routes.always.clone();
        let mut matched = false;
        for (cond, t) in &routes.when {
            let holds = cond.eval_bool(state).map_err(|e| RunError::Expression {
                node: from.to_string(),
                message: e.to_string(),
            })?;
            if holds {
                matched = true;
                targets.push(*t);
            }
        }
        if !matched && let Some(t) = routes.default {
            targets.push(t);
        }
        Ok(targets)
    }

    /// The distinct nodes among `targets`, in order (END is not a node to run).
    fn names(&self, targets: &[Target]) -> Vec<String> {
        let mut next: Vec<String> = Vec::new();
        for t in targets {
            if let Target::Node(id) = t {
                let name = self.graph.nodes[*id as usize].name.to_string();
                if !next.contains(&name) {
                    next.push(name);
                }
            }
        }
        next
    }

    /// Keeps the thread's latest `keep` checkpoints and deletes the older ones, first storing
    /// the oldest kept one as a full snapshot so it can still be rebuilt. Returns how many
    /// checkpoints were deleted.
    pub async fn prune(&self, thread_id: &str, keep: usize) -> Result<u64, RunError> {
        let saver = self.saver()?;
        let list = saver.list(thread_id).await.map_err(cp_err)?;
        let keep = keep.max(1);
        if list.len() <= keep {
            return Ok(0);
        }
        let cut = list[list.len() - keep].checkpoint_id;
        let chain = saver.chain(thread_id, Some(cut)).await.map_err(cp_err)?;
        let cut_is_snapshot = chain
            .first()
            .is_some_and(|c| c.id == cut && c.snapshot.is_some());
        if !cut_is_snapshot {
            let state = State::rebuild(&self.graph, &chain)
                .map_err(|message| RunError::Checkpoint { message })?;
            saver
                .put_snapshot(thread_id, cut, &state.to_map())
                .await
                .map_err(cp_err)?;
        }
        saver.prune(thread_id, keep).await.map_err(cp_err)
    }

    /// Starts a new thread from a past checkpoint of another; returns the new thread's id.
    /// Running the new thread (without input) continues from that checkpoint.
    pub async fn fork(
        &self,
        thread_id: &str,
        checkpoint: u64,
        new_thread: Option<String>,
    ) -> Result<String, RunError> {
        let saver = self.saver()?;
        let chain = saver
            .chain(thread_id, Some(checkpoint))
            .await
            .map_err(cp_err)?;
        let Some(last) = chain.last().filter(|c| c.id == checkpoint) else {
            return Err(RunError::Thread {
                message: missing_thread(thread_id, Some(checkpoint)),
            });
        };
        let state = State::rebuild(&self.graph, &chain)
            .map_err(|message| RunError::Checkpoint { message })?;
        let new_id = new_thread.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if saver.thread(&new_id).await.map_err(cp_err)?.is_some() {
            return Err(RunError::Thread {
                message: format!("thread `{new_id}` already exists; pick another id"),
            });
        }
        let now = now_ms();
        let record = CheckpointRecord {
            thread_id: new_id.clone(),
            id: 0,
            parent: None,
            step: last.step,
            source: CheckpointSource::Fork,
            nodes: Vec::new(),
            deltas: Vec::new(),
            snapshot: Some(state.to_map()),
            next: last.next.clone(),
            sends: last.sends.clone(),
            joins: last.joins.clone(),
            created_at_ms: now,
        };
        saver
            .put_thread(
                &ThreadInfo {
                    thread_id: new_id.clone(),
                    graph: self.graph.name.clone(),
                    status: ThreadStatus::Idle,
                    last_checkpoint: None,
                    interrupt: None,
                    error: None,
                    lease: None,
                    created_at_ms: now,
                    updated_at_ms: now,
                },
                None,
            )
            .await
            .map_err(cp_err)?;
        saver.put(&record, None).await.map_err(cp_err)?;
        Ok(new_id)
    }
}

/// Folds the writes of tasks that finished in an interrupted step into `state`, in the
/// step's fold order, as LangGraph reports an interrupted thread's state. Writes that
/// would not fold leave the state as committed.
pub(super) fn fold_pending(graph: &Graph, state: &mut State, mut pending: Vec<TaskWrites>) {
    let order = |t: &TaskWrites| {
        let rank = graph
            .node_id(&t.node)
            .map_or(u32::MAX, |n| graph.nodes[n as usize].rank);
        // Sent work items (`NODE#k`) fold after every node's tasks, in send order.
        let sent = t
            .task_id
            .rsplit_once('#')
            .and_then(|(_, k)| k.parse::<usize>().ok());
        let item = t
            .task_id
            .strip_suffix(']')
            .and_then(|s| s.rsplit_once('['))
            .and_then(|(_, i)| i.parse::<usize>().ok())
            .unwrap_or(0);
        // A resume's update (`__input__`) folds first.
        match sent {
            _ if t.task_id == start::INPUT_TASK => (0, 0),
            Some(k) => (u32::MAX, k),
            None => (rank.saturating_add(1), item),
        }
    };
    pending.sort_by_key(order);
    let mut undo = Vec::new();
    let mut scratch = Vec::new();
    for task in pending {
        for (name, value) in task.writes {
            let Some(ch) = graph.channel_id(&name) else {
                continue;
            };
            if state
                .fold_logged(graph, ch, value, &mut undo, &mut scratch)
                .is_err()
            {
                state.undo(&mut undo);
                return;
            }
        }
    }
}

pub(super) fn missing_thread(thread_id: &str, checkpoint: Option<u64>) -> String {
    match checkpoint {
        Some(c) => format!(
            "thread `{thread_id}` has no checkpoint {c}; list them with `brainops threads history {thread_id}`"
        ),
        None => format!(
            "thread `{thread_id}` has no checkpoints; list threads with `brainops threads list`"
        ),
    }
}

/// `info` idle, with no question or error left, when an edit that replaced its state
/// `succeeded`; as it was otherwise.
fn settled_if(info: ThreadInfo, succeeded: bool) -> ThreadInfo {
    if succeeded {
        ThreadInfo {
            status: ThreadStatus::Idle,
            interrupt: None,
            error: None,
            ..info
        }
    } else {
        info
    }
}

/// Stores `info` with the lease taken for an administrative edit given back.
async fn release_lease(
    saver: &dyn Checkpointer,
    info: ThreadInfo,
    lease: &Lease,
) -> Result<(), RunError> {
    let release = ThreadInfo {
        lease: None,
        updated_at_ms: now_ms(),
        ..info
    };
    saver
        .put_thread(&release, Some(lease))
        .await
        .map_err(cp_err)
}
