//! Starting a run: claim the thread, restore its state, apply the input or the resume,
//! check required inputs.

use super::*;

/// The pending-writes task that holds a resume's `update` and `goto`.
pub(super) const INPUT_TASK: &str = "__input__";
/// The pending-writes task `TASK@answers` holds every answer given to TASK in this step.
pub(super) const ANSWERS_SUFFIX: &str = "@answers";

impl<'g> Execution<'g> {
    /// Loads the thread and decides where this run starts.
    pub(super) async fn start(
        &mut self,
        request: RunRequest,
    ) -> Result<(State, Position, Resume), RunError> {
        let graph = self.graph;
        let empty_pos = || Position {
            checkpoint_id: None,
            step: 0,
            frontier: Vec::new(),
            sends: Vec::new(),
            joins: graph
                .joins
                .iter()
                .map(|j| vec![false; j.sources.len()])
                .collect(),
            since_snapshot: 0,
            snapshot_bytes: 0,
        };
        let (mut state, mut pos, info) = match self.saver.clone() {
            Some(saver) => {
                let lease = Lease::new(self.lease_ms);
                let claimed = acquire(
                    saver.as_ref(),
                    &self.thread_id,
                    &graph.name,
                    &lease,
                    request.takeover,
                )
                .await
                .map_err(cp_err)?;
                self.lease = Some(lease);
                self.claimed = Some(claimed.clone());
                let chain = saver.chain(&self.thread_id, None).await.map_err(cp_err)?;
                if !chain.is_empty() && claimed.graph != graph.name {
                    return Err(RunError::Thread {
                        message: format!(
                            "thread `{}` belongs to graph `{}`, not `{}`; run it with that graph's file, or use another thread id",
                            self.thread_id, claimed.graph, graph.name
                        ),
                    });
                }
                let info = Some(claimed);
                match chain.last() {
                    Some(last) => {
                        let state = State::rebuild(graph, &chain)
                            .map_err(|message| RunError::Checkpoint { message })?;
                        let mut pos = empty_pos();
                        pos.checkpoint_id = Some(last.id);
                        pos.step = last.step;
                        pos.frontier = self.node_ids(&last.next)?;
                        for send in &last.sends {
                            let n = self.node_ids(std::slice::from_ref(&send.node))?;
                            pos.sends
                                .extend(n.into_iter().map(|n| (n, send.arg.clone())));
                        }
                        pos.frontier
                            .sort_unstable_by_key(|&n| graph.nodes[n as usize].rank);
                        for progress in &last.joins {
                            if let Some(seen) = pos.joins.get_mut(progress.join as usize) {
                                for (i, &src) in graph.joins[progress.join as usize]
                                    .sources
                                    .iter()
                                    .enumerate()
                                {
                                    seen[i] = progress
                                        .seen
                                        .iter()
                                        .any(|s| *graph.nodes[src as usize].name == *s);
                                }
                            }
                        }
                        (state, pos, info)
                    }
                    None => (State::new(graph), empty_pos(), info),
                }
            }
            None => (State::new(graph), empty_pos(), None),
        };
        if let Some(info) = &info
            && info.status == ThreadStatus::Running
        {
            // A crashed process leaves `running` behind; continuing is what the caller asked.
            tracing::info!(thread = %self.thread_id, "continuing a thread whose last run did not finish");
        }
        let interrupted = info
            .as_ref()
            .filter(|i| i.status == ThreadStatus::Interrupted)
            .and_then(|i| i.interrupt.clone());
        // A parked wait continues with the due time it stored, whatever is passed.
        let parked = interrupted
            .as_ref()
            .filter(|i| i.kind == InterruptKind::Wait && request.input.is_none());
        let answering = request.resume.is_some() || !request.resume_each.is_empty();
        let resume = match &interrupted {
            _ if parked.is_some() => {
                if let Some(i) = parked {
                    self.answers.insert(i.task.clone(), vec![i.value.clone()]);
                }
                Resume::Answers
            }
            _ if answering && request.input.is_some() => {
                return Err(RunError::Input {
                    message: "give either an input (a new run) or a resume value, not both".into(),
                });
            }
            Some(i) if answering && i.all().any(|i| i.kind == InterruptKind::Ask) => {
                self.answer(&request, i, &pos).await?;
                Resume::Answers
            }
            Some(_) if answering => Resume::PassBefore,
            None if answering && pos.checkpoint_id.is_none() => {
                return Err(RunError::Thread {
                    message: format!(
                        "thread `{}` does not exist, so it is not interrupted; there is nothing to resume (see `brainops threads list`)",
                        self.thread_id
                    ),
                });
            }
            None if answering => {
                let status = info.as_ref().map_or("unknown", |i| i.status.as_str());
                return Err(RunError::Thread {
                    message: format!(
                        "thread `{}` is not interrupted (status: {status}); there is nothing to resume",
                        self.thread_id
                    ),
                });
            }
            _ => Resume::None,
        };
        let command = request.update.is_some() || !request.goto.is_empty();
        if command && request.input.is_some() {
            return Err(RunError::Input {
                message:
                    "give either an input (a new run) or a command (`goto`/`update`), not both"
                        .into(),
            });
        }
        if let Resume::Answers | Resume::PassBefore = resume {
            self.resume_command(&request, &mut state, &mut pos).await?;
            self.save_thread(ThreadStatus::Running, pos.checkpoint_id, None, None)
                .await?;
            return Ok((state, pos, resume));
        }
        if command {
            if let Some(i) = &interrupted {
                return Err(RunError::Thread {
                    message: format!(
                        "thread `{}` is waiting at node `{}`; send `goto`/`update` together with a resume value",
                        self.thread_id, i.node
                    ),
                });
            }
            // A command on a thread that waits for nothing: the update and the routes
            // start a run from where the thread stands.
            if info
                .as_ref()
                .is_some_and(|i| i.status == ThreadStatus::Done)
            {
                pos.frontier.clear();
                pos.sends.clear();
            }
            let mut deltas = Vec::new();
            if let Some(update) = request.update.clone() {
                deltas = apply_input(graph, &mut state, update, "update", self.saver.is_some())?;
            }
            for goto in &request.goto {
                self.add_goto(&mut pos, goto)?;
            }
            pos.frontier
                .sort_unstable_by_key(|&n| graph.nodes[n as usize].rank);
            self.save_thread(ThreadStatus::Running, pos.checkpoint_id, None, None)
                .await?;
            self.checkpoint(
                &state,
                &mut pos,
                CheckpointSource::Update,
                Vec::new(),
                deltas,
            )
            .await?;
            return Ok((state, pos, Resume::None));
        }
        let unfinished = !(pos.frontier.is_empty() && pos.sends.is_empty())
            && info
                .as_ref()
                .is_some_and(|i| i.status != ThreadStatus::Done);
        if let Some(i) = &interrupted {
            if request.input.is_some() {
                return Err(RunError::Thread {
                    message: format!(
                        "thread `{}` is waiting at node `{}`; answer it with a resume value (`--resume JSON`) instead of new input",
                        self.thread_id, i.node
                    ),
                });
            }
            // Neither input nor resume: ask the same question again, as LangGraph does.
            if let (Some(saver), Some(cp)) = (&self.saver, pos.checkpoint_id) {
                let pending = saver.writes(&self.thread_id, cp).await.map_err(cp_err)?;
                fold_pending(graph, &mut state, pending);
            }
            return Ok((state, pos, Resume::Again(i.clone())));
        }
        if request.input.is_none() && unfinished {
            self.save_thread(ThreadStatus::Running, pos.checkpoint_id, None, None)
                .await?;
            return Ok((state, pos, Resume::None));
        }
        if request.input.is_none() && pos.checkpoint_id.is_some() {
            // A finished thread and no new input: nothing to do. Starting over here would
            // repeat a whole run (and its side effects) because a caller retried a
            // "continue" that had already completed.
            pos.frontier.clear();
            return Ok((state, pos, Resume::None));
        }
        // A new run: apply the input, then route from START.
        let input = request.input.unwrap_or_else(|| Value::Object(Map::new()));
        let deltas = apply_input(graph, &mut state, input, "input", self.saver.is_some())?;
        check_required(graph, &state)?;
        for seen in &mut pos.joins {
            seen.iter_mut().for_each(|s| *s = false);
        }
        pos.frontier.clear();
        pos.sends.clear();
        let mut next = Vec::new();
        self.route(&graph.start, "START", &state, pos.step, false, &mut next)?;
        next.sort_unstable_by_key(|&n| graph.nodes[n as usize].rank);
        pos.frontier = next;
        self.save_thread(ThreadStatus::Running, pos.checkpoint_id, None, None)
            .await?;
        // The input checkpoint's write is traced as the first step will be.
        self.step_traced = self.traced(&pos);
        self.checkpoint(
            &state,
            &mut pos,
            CheckpointSource::Input,
            Vec::new(),
            deltas,
        )
        .await?;
        Ok((state, pos, Resume::None))
    }

    /// Records this resume's answers with the step's pending writes (`TASK@answers`, every
    /// answer of the task so far, so a node asking several questions gets the earlier ones
    /// again) and loads them into `self.answers`. One value answers the only waiting
    /// question; with several waiting (parallel interrupts) a map of task → value is needed.
    async fn answer(
        &mut self,
        request: &RunRequest,
        interrupt: &InterruptInfo,
        pos: &Position,
    ) -> Result<(), RunError> {
        let waiting: Vec<&InterruptInfo> = interrupt
            .all()
            .filter(|i| i.kind == InterruptKind::Ask)
            .collect();
        let tasks = || {
            waiting
                .iter()
                .map(|i| format!("`{}`", i.task))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let given: Vec<(String, Value)> = if !request.resume_each.is_empty() {
            if request.resume.is_some() {
                return Err(RunError::Input {
                    message: "give either one resume value or a map of task → value, not both"
                        .into(),
                });
            }
            for (task, _) in &request.resume_each {
                if !waiting.iter().any(|i| i.task == *task) {
                    return Err(RunError::Input {
                        message: format!(
                            "no question of task `{task}` is waiting; the waiting tasks are {}",
                            tasks()
                        ),
                    });
                }
            }
            request.resume_each.clone()
        } else {
            match (&request.resume, waiting.as_slice()) {
                (Some(value), [only]) => vec![(only.task.clone(), value.clone())],
                (Some(_), _) => {
                    return Err(RunError::Input {
                        message: format!(
                            "{} questions are waiting (tasks {}); answer them with a map of task → value (`--resume-each`, `RunRequest::resume_each`)",
                            waiting.len(),
                            tasks()
                        ),
                    });
                }
                (None, _) => Vec::new(),
            }
        };
        self.fresh_answers
            .extend(given.iter().map(|(t, v)| (t.clone(), v.clone())));
        let (Some(saver), Some(cp)) = (self.saver.clone(), pos.checkpoint_id) else {
            self.answers
                .extend(given.into_iter().map(|(t, v)| (t, vec![v])));
            return Ok(());
        };
        for w in saver.writes(&self.thread_id, cp).await.map_err(cp_err)? {
            if let Some(task) = w.task_id.strip_suffix(ANSWERS_SUFFIX)
                && let Some((_, Value::Array(list))) = w.writes.into_iter().next()
            {
                self.answers.insert(task.to_string(), list);
            }
        }
        for (task, value) in given {
            let list = self.answers.entry(task.clone()).or_default();
            list.push(value);
            let node = waiting
                .iter()
                .find(|i| i.task == task)
                .map_or_else(String::new, |i| i.node.clone());
            let record = TaskWrites {
                task_id: format!("{task}{ANSWERS_SUFFIX}"),
                node,
                writes: vec![("__answers__".into(), Value::Array(list.clone()))],
            };
            saver
                .put_writes(&self.thread_id, cp, &record, self.lease.as_ref())
                .await
                .map_err(cp_err)?;
        }
        Ok(())
    }

    /// A resume's `update` and `goto` (LangGraph's `Command(resume, update, goto)`): stored
    /// with the interrupted step's pending writes (task `__input__`), so they hold if the
    /// step stops again; the update is applied before the step runs, and its routes join the
    /// step. Those stored by an earlier resume of the same step are applied again.
    async fn resume_command(
        &mut self,
        request: &RunRequest,
        state: &mut State,
        pos: &mut Position,
    ) -> Result<(), RunError> {
        let (Some(saver), Some(cp)) = (self.saver.clone(), pos.checkpoint_id) else {
            return Ok(());
        };
        let mut writes: Vec<(String, Value)> = saver
            .writes(&self.thread_id, cp)
            .await
            .map_err(cp_err)?
            .into_iter()
            .filter(|w| w.task_id == INPUT_TASK)
            .flat_map(|w| w.writes)
            .collect();
        if request.update.is_some() || !request.goto.is_empty() {
            if let Some(update) = &request.update {
                let Value::Object(map) = update else {
                    return Err(RunError::Input {
                        message: format!(
                            "the update must be a JSON object of channel values, got {}",
                            crate::channel::kind(update)
                        ),
                    });
                };
                writes.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            for goto in &request.goto {
                writes.push((
                    crate::graph::GOTO_NAME.to_string(),
                    serde_json::to_value(goto).unwrap_or_default(),
                ));
            }
            let record = TaskWrites {
                task_id: INPUT_TASK.into(),
                node: INPUT_TASK.into(),
                writes: writes.clone(),
            };
            saver
                .put_writes(&self.thread_id, cp, &record, self.lease.as_ref())
                .await
                .map_err(cp_err)?;
        }
        for (name, value) in writes {
            if name == crate::graph::GOTO_NAME {
                let goto: crate::node::Goto =
                    serde_json::from_value(value).map_err(|e| RunError::Input {
                        message: format!("a stored route is not a node name or {{node, arg}}: {e}"),
                    })?;
                self.add_goto(pos, &goto)?;
                continue;
            }
            let mut one = Map::new();
            one.insert(name, value);
            let deltas = apply_input(self.graph, state, Value::Object(one), "update", true)?;
            self.input_deltas.extend(deltas);
        }
        pos.frontier
            .sort_unstable_by_key(|&n| self.graph.nodes[n as usize].rank);
        Ok(())
    }

    /// Adds a command's route to the next step: a node, or a work item for one.
    fn add_goto(&self, pos: &mut Position, goto: &crate::node::Goto) -> Result<(), RunError> {
        if goto.node() == crate::graph::END {
            return Ok(());
        }
        let n = self
            .node_ids(std::slice::from_ref(&goto.node().to_string()))
            .map_err(|_| RunError::Input {
                message: format!(
                    "goto: `{}` is not a node of graph `{}`",
                    goto.node(),
                    self.graph.name
                ),
            })?[0];
        match goto {
            crate::node::Goto::Node(_) => {
                if !pos.frontier.contains(&n) {
                    pos.frontier.push(n);
                }
            }
            crate::node::Goto::Send { arg, .. } => pos.sends.push((n, arg.clone())),
        }
        Ok(())
    }

    pub(super) fn node_ids(&self, names: &[String]) -> Result<Vec<NodeId>, RunError> {
        names
            .iter()
            .map(|n| {
                self.graph.node_id(n).ok_or_else(|| RunError::Thread {
                    message: format!(
                        "the thread's next node `{n}` is not in graph `{}`; was the graph edited?",
                        self.graph.name
                    ),
                })
            })
            .collect()
    }
}

/// Refuses a new run whose state lacks what `[state]` declares required, naming every
/// missing value at once, before any node runs (and before any model is called).
pub(super) fn check_required(graph: &Graph, state: &State) -> Result<(), RunError> {
    let mut missing: Vec<String> = Vec::new();
    for &id in &graph.required {
        let channel = &graph.channels[id as usize];
        let value = &state.values[id as usize];
        match &channel.required {
            Some(crate::channel::Required::Value) if value.is_null() => {
                missing.push(format!("`{}`", channel.name));
            }
            Some(crate::channel::Required::Fields(fields)) => {
                for field in fields {
                    if value.get(field).is_none_or(Value::is_null) {
                        missing.push(format!("`{}.{field}`", channel.name));
                    }
                }
            }
            _ => {}
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(RunError::Input {
        message: format!(
            "the input lacks {} (required in [state] of graph `{}`); give {} in the input",
            missing.join(", "),
            graph.name,
            if missing.len() == 1 { "it" } else { "them" }
        ),
    })
}

/// Applies a JSON object of channel writes through reducers; returns the deltas to store,
/// none when `store` is false (no checkpointer: the input is then moved into the state,
/// never copied). On an error `state` is left part-updated: callers discard it.
pub(super) fn apply_input(
    graph: &Graph,
    state: &mut State,
    input: Value,
    what: &str,
    store: bool,
) -> Result<Vec<ChannelDelta>, RunError> {
    let Value::Object(map) = input else {
        return Err(RunError::Input {
            message: format!(
                "the {what} must be a JSON object of channel values, got {}",
                crate::channel::kind(&input)
            ),
        });
    };
    let mut deltas = Vec::with_capacity(if store { map.len() } else { 0 });
    for (key, value) in map {
        let Some(id) = graph.channel_id(&key) else {
            let names: Vec<&str> = graph.channels.iter().map(|c| c.name.as_str()).collect();
            return Err(RunError::Input {
                message: format!(
                    "`{key}` is not a declared channel of graph `{}` (declared: {}); declare it in [state]",
                    graph.name,
                    names.join(", ")
                ),
            });
        };
        let channel = &graph.channels[id as usize];
        let given = crate::channel::kind(&value);
        if store {
            deltas.push(if channel.reducer.stores_delta() {
                ChannelDelta::Reduce {
                    channel: key.clone(),
                    writes: vec![value.clone()],
                }
            } else {
                // The value the channel takes: an overwrite's, not the wrapper.
                ChannelDelta::Set {
                    channel: key.clone(),
                    value: crate::channel::overwrite(value.clone()).unwrap_or_else(|v| v),
                }
            });
        }
        // Folded in place: on an error the caller discards the whole state.
        let slot = &mut state.values[id as usize];
        channel
            .reducer
            .apply(slot, value)
            .map_err(|e| RunError::Input {
                message: format!("`{key}`: {e}"),
            })?;
        if !channel.ty.accepts(slot) {
            return Err(RunError::Input {
                message: format!(
                    "`{key}` must be of type {}, got {given}",
                    crate::graph::type_name(channel.ty),
                ),
            });
        }
        state.invalidate(id);
    }
    Ok(deltas)
}
