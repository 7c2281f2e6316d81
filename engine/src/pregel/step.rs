//! The super-step loop: each step is planned, executed and committed; then edges route
//! to the next frontier and a checkpoint is stored.

use super::*;

impl<'g> Execution<'g> {
    pub(super) async fn steps(
        &mut self,
        state: &mut State,
        pos: &mut Position,
        mut resume: Resume,
    ) -> StepsResult {
        let graph = self.graph;
        let mut steps_run: u64 = 0;
        let mut next_frontier: Vec<NodeId> = Vec::new();
        let mut ran: Vec<NodeId> = Vec::new();
        if let Resume::Again(info) = resume {
            for i in info.all() {
                self.announce(i);
            }
            return Ok((Some(info), 0));
        }
        loop {
            // Checked before "nothing left to run", as LangGraph does: a run that needs all
            // of its `recursion_limit` steps fails (a 100-node chain needs a limit of 101,
            // because LangGraph counts the step that reads the input).
            if steps_run >= u64::from(self.recursion_limit) {
                return Err((
                    RunError::RecursionLimit {
                        limit: self.recursion_limit,
                    },
                    steps_run,
                ));
            }
            if pos.frontier.is_empty() && pos.sends.is_empty() {
                return Ok((None, steps_run));
            }
            if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
                return Err((RunError::Cancelled, steps_run));
            }
            // Interrupt before: pause ahead of the step, unless this run resumes from it.
            let pass_before = matches!(resume, Resume::PassBefore | Resume::Answers);
            if !pass_before
                && let Some(&n) = pos
                    .frontier
                    .iter()
                    .chain(pos.sends.iter().map(|(n, _)| n))
                    .find(|&&n| {
                        graph.nodes[n as usize].interrupt_before
                            || self.break_before.get(n as usize) == Some(&true)
                    })
            {
                return Ok((Some(self.stop_at(InterruptKind::Before, n)), steps_run));
            }
            let step = pos.step + 1;
            let answering = matches!(
                std::mem::replace(&mut resume, Resume::None),
                Resume::Answers
            );
            self.step_traced = self.traced(pos);
            let step_span = if self.step_traced {
                crate::trace::step(step)
            } else {
                self.untraced_steps += 1;
                tracing::Span::none()
            };
            let result = self
                .step(state, pos, step, answering, steps_run == 0, &mut ran)
                .instrument(step_span.clone())
                .await;
            if answering {
                self.answers.clear();
                self.fresh_answers.clear();
            }
            steps_run += 1;
            // A step that fails before its checkpoint is stored leaves the state as it was
            // last committed: that is what the run reports, as `threads show` would.
            let deltas = match result {
                Ok(StepEnd::Committed(mut deltas)) => {
                    if !self.input_deltas.is_empty() {
                        let mut first = std::mem::take(&mut self.input_deltas);
                        first.append(&mut deltas);
                        deltas = first;
                    }
                    deltas
                }
                Ok(StepEnd::Interrupted(interrupt)) => return Ok((Some(interrupt), steps_run - 1)),
                Err(e) => {
                    state.undo(&mut self.undo);
                    return Err((e, steps_run));
                }
            };
            // Update: route from every node that ran (its edges, then the routes its tasks
            // chose), bring back held deferred nodes, then checkpoint.
            next_frontier.clear();
            let gotos = std::mem::take(&mut self.gotos);
            for &n in &ran {
                let node = &graph.nodes[n as usize];
                let chose = gotos.iter().any(|(from, ..)| *from == n);
                if let Err(e) = self.route(
                    &node.routes,
                    &node.name,
                    state,
                    step,
                    chose,
                    &mut next_frontier,
                ) {
                    state.undo(&mut self.undo);
                    return Err((e, steps_run));
                }
                for &j in &node.joins {
                    self.mark_join(pos, j, n, step, &mut next_frontier);
                }
            }
            pos.sends.clear();
            for (_, target, arg) in gotos {
                match (target, arg) {
                    (Target::Node(n), Some(arg)) => pos.sends.push((n, arg)),
                    (target, _) => self.schedule(target, step, &mut next_frontier),
                }
            }
            for n in std::mem::take(&mut self.held) {
                self.schedule(Target::Node(n), step, &mut next_frontier);
            }
            next_frontier.sort_unstable_by_key(|&n| graph.nodes[n as usize].rank);
            std::mem::swap(&mut pos.frontier, &mut next_frontier);
            pos.step = step;
            let names: Vec<String> = if self.saver.is_some() {
                ran.iter()
                    .map(|&n| graph.nodes[n as usize].name.to_string())
                    .collect()
            } else {
                Vec::new()
            };
            if let Err(e) = self
                .checkpoint(state, pos, CheckpointSource::Loop, names, deltas)
                .instrument(step_span)
                .await
            {
                state.undo(&mut self.undo);
                return Err((e, steps_run));
            }
            if self.emit_values {
                self.emit(|| Event::Values {
                    step: Some(step),
                    state: state.to_json(),
                });
            }
            self.emit(|| Event::StepFinished { step });
            if let Some(&n) = ran.iter().find(|&&n| {
                graph.nodes[n as usize].interrupt_after
                    || self.break_after.get(n as usize) == Some(&true)
            }) {
                return Ok((Some(self.stop_at(InterruptKind::After, n)), steps_run));
            }
        }
    }

    pub(super) fn mark_join(
        &mut self,
        pos: &mut Position,
        j: JoinId,
        n: NodeId,
        step: u64,
        next: &mut Vec<NodeId>,
    ) {
        let join = &self.graph.joins[j as usize];
        let seen = &mut pos.joins[j as usize];
        for (i, &s) in join.sources.iter().enumerate() {
            if s == n {
                seen[i] = true;
            }
        }
        if seen.iter().all(|&s| s) {
            seen.iter_mut().for_each(|s| *s = false);
            self.schedule(join.to, step, next);
        }
    }

    pub(super) fn schedule(&mut self, target: Target, step: u64, next: &mut Vec<NodeId>) {
        if let Target::Node(n) = target
            && self.scheduled[n as usize] != step
        {
            self.scheduled[n as usize] = step;
            next.push(n);
        }
    }

    /// Whether the step about to run `pos`'s tasks gets spans: always with
    /// `BRAINOPS_TRACE_EXPRESSIONS`, else when a task calls out (a tool, agent or Rust
    /// node, or a subgraph), so runs of expression nodes only cost nothing to trace.
    pub(super) fn traced(&self, pos: &Position) -> bool {
        crate::trace::expression_steps()
            || pos
                .frontier
                .iter()
                .chain(pos.sends.iter().map(|(n, _)| n))
                .any(|&n| {
                    matches!(
                        self.graph.nodes[n as usize].kind,
                        Kind::Call { .. } | Kind::Subgraph { .. }
                    )
                })
    }

    /// Evaluates a node's outgoing edges against the updated state.
    pub(super) fn route(
        &mut self,
        routes: &Routes,
        from: &str,
        state: &State,
        step: u64,
        chose: bool,
        next: &mut Vec<NodeId>,
    ) -> Result<(), RunError> {
        for &t in &routes.always {
            self.schedule(t, step, next);
        }
        let mut matched = false;
        for (cond, t) in &routes.when {
            let ok = cond.eval_bool(state).map_err(|e| RunError::Expression {
                node: from.into(),
                message: e.to_string(),
            })?;
            if ok {
                matched = true;
                self.schedule(*t, step, next);
            }
        }
        if !matched {
            if let Some(t) = routes.default {
                self.schedule(t, step, next);
            } else if !routes.when.is_empty() && routes.always.is_empty() && !chose {
                let mut seen = Map::new();
                for (cond, _) in &routes.when {
                    match cond.reads() {
                        Some(ids) => {
                            for &id in ids {
                                seen.insert(
                                    self.graph.channels[id as usize].name.clone(),
                                    state.values[id as usize].clone(),
                                );
                            }
                        }
                        None => seen = state.to_map(),
                    }
                }
                let conditions: Vec<&str> = routes.when.iter().map(|(c, _)| c.source()).collect();
                let mut detail = Map::new();
                detail.insert("conditions".into(), Value::from(conditions));
                detail.insert("state".into(), Value::Object(seen));
                return Err(RunError::NoRoute {
                    node: from.into(),
                    seen: Value::Object(detail),
                });
            }
        }
        Ok(())
    }

    pub(super) async fn checkpoint(
        &mut self,
        state: &State,
        pos: &mut Position,
        source: CheckpointSource,
        nodes: Vec<String>,
        deltas: Vec<ChannelDelta>,
    ) -> Result<(), RunError> {
        let Some(saver) = self.saver.clone() else {
            return Ok(());
        };
        let graph = self.graph;
        let id = pos.checkpoint_id.map_or(0, |c| c + 1);
        let mut counter = ByteCounter(0);
        let _ = serde_json::to_writer(&mut counter, &deltas);
        pos.since_snapshot += counter.0;
        let snapshot = if pos.since_snapshot > SNAPSHOT_MIN_BYTES.max(pos.snapshot_bytes) {
            let map = state.to_map();
            let mut size = ByteCounter(0);
            let _ = serde_json::to_writer(&mut size, &map);
            pos.snapshot_bytes = size.0;
            pos.since_snapshot = 0;
            Some(map)
        } else {
            None
        };
        let joins = pos
            .joins
            .iter()
            .enumerate()
            .filter(|(_, seen)| seen.iter().any(|&s| s))
            .map(|(j, seen)| JoinProgress {
                join: j as u32,
                seen: graph.joins[j]
                    .sources
                    .iter()
                    .zip(seen)
                    .filter(|(_, s)| **s)
                    .map(|(&n, _)| graph.nodes[n as usize].name.to_string())
                    .collect(),
            })
            .collect();
        let record = CheckpointRecord {
            thread_id: self.thread_id.to_string(),
            id,
            parent: pos.checkpoint_id,
            step: pos.step,
            source,
            nodes,
            deltas: if snapshot.is_some() {
                Vec::new()
            } else {
                deltas
            },
            snapshot,
            next: pos
                .frontier
                .iter()
                .map(|&n| graph.nodes[n as usize].name.to_string())
                .collect(),
            sends: pos
                .sends
                .iter()
                .map(|(n, arg)| crate::checkpoint::SendTask {
                    node: graph.nodes[*n as usize].name.to_string(),
                    arg: arg.clone(),
                })
                .collect(),
            joins,
            created_at_ms: now_ms(),
        };
        let lease = self.renewed_lease();
        let span = if self.step_traced {
            crate::trace::checkpoint_write(id, pos.step)
        } else {
            tracing::Span::none()
        };
        if !span.is_disabled() {
            span.record("bytes", crate::trace::int(record.stored_bytes()));
        }
        saver
            .put(&record, lease.as_ref())
            .instrument(span)
            .await
            .map_err(cp_err)?;
        pos.checkpoint_id = Some(id);
        if let Some(sink) = &self.events {
            let bytes = record.stored_bytes();
            sink.send(Event::Checkpoint {
                checkpoint_id: id,
                parent: record.parent,
                step: pos.step,
                source: record.source,
                next: record.next,
                bytes,
            });
        }
        Ok(())
    }

    /// The run stops before or after node `n` (`interrupt_before` / `interrupt_after`).
    fn stop_at(&self, kind: InterruptKind, n: NodeId) -> InterruptInfo {
        let node = self.graph.nodes[n as usize].name.to_string();
        let info = InterruptInfo {
            kind,
            task: node.clone(),
            node,
            value: Value::Null,
            siblings: Vec::new(),
        };
        self.announce(&info);
        info
    }

    /// Tells the run's listeners that it stops at `info`.
    fn announce(&self, info: &InterruptInfo) {
        self.emit(|| Event::Interrupt {
            node: info.node.clone(),
            task: info.task.clone(),
            value: info.value.clone(),
        });
    }

    /// One super-step, in three phases: [`plan`](Self::plan) the tasks from the frontier,
    /// [`execute`](Self::execute) them, [`commit`](Self::commit) their writes into `state`.
    pub(super) async fn step(
        &mut self,
        state: &mut State,
        pos: &Position,
        step: u64,
        answering: bool,
        first: bool,
        ran: &mut Vec<NodeId>,
    ) -> Result<StepEnd, RunError> {
        self.current_checkpoint = pos.checkpoint_id;
        self.undo.clear();
        self.gotos.clear();
        let tasks = self.plan(state, pos, ran)?;
        let graph = self.graph;
        self.emit(|| Event::StepStarted {
            step,
            nodes: ran
                .iter()
                .map(|&n| graph.nodes[n as usize].name.to_string())
                .collect(),
        });

        let (results, saved_flags) = self
            .execute(state, pos, step, &tasks, answering, first)
            .await?;
        self.commit(state, pos, step, &tasks, results, &saved_flags)
            .await
    }

    /// Plan: the frontier's nodes become tasks (a `for_each` node one per element), then
    /// the work items sent to nodes, their inputs read from the state as it was before the
    /// step. A deferred node waits while anything else is to run; a `for_each` over an empty
    /// list runs nothing (and nothing after it, unless `on_empty = "continue"`). `ran` gets
    /// the nodes whose edges fire after the step.
    fn plan(
        &mut self,
        state: &State,
        pos: &Position,
        ran: &mut Vec<NodeId>,
    ) -> Result<Vec<Task>, RunError> {
        let graph = self.graph;
        ran.clear();
        self.held.clear();
        let others =
            !pos.sends.is_empty() || pos.frontier.iter().any(|&n| !graph.nodes[n as usize].defer);
        let mut tasks: Vec<Task> = Vec::with_capacity(pos.frontier.len() + pos.sends.len());
        for &n in &pos.frontier {
            let node = &graph.nodes[n as usize];
            if node.defer && others {
                self.held.push(n);
                continue;
            }
            match &node.for_each {
                Some(expr) => {
                    let list = expr.eval(state, None).map_err(|e| RunError::Expression {
                        node: node.name.to_string(),
                        message: e.to_string(),
                    })?;
                    let Value::Array(items) = list else {
                        return Err(RunError::Expression {
                            node: node.name.to_string(),
                            message: format!(
                                "`for_each = \"{}\"` must give a list, got {}",
                                expr.source(),
                                crate::channel::kind(&list)
                            ),
                        });
                    };
                    if items.is_empty() && !node.on_empty_continue {
                        continue;
                    }
                    ran.push(n);
                    tasks.extend(items.into_iter().enumerate().map(|(i, item)| Task {
                        node: n,
                        item: Some((item, i)),
                        sent: false,
                    }));
                }
                None => {
                    ran.push(n);
                    tasks.push(Task {
                        node: n,
                        item: None,
                        sent: false,
                    });
                }
            }
        }
        for (k, (n, arg)) in pos.sends.iter().enumerate() {
            if !ran.contains(n) {
                ran.push(*n);
            }
            tasks.push(Task {
                node: *n,
                item: Some((arg.clone(), k)),
                sent: true,
            });
        }
        Ok(tasks)
    }

    /// Execute: writes saved by an earlier attempt at this step are reused; expression and
    /// ask nodes run inline; calls and subgraphs run inline when alone and in parallel
    /// otherwise. Returns each task's result and whether its writes are already saved.
    async fn execute(
        &mut self,
        state: &State,
        pos: &Position,
        step: u64,
        tasks: &[Task],
        answering: bool,
        first: bool,
    ) -> Result<(Vec<TaskResult>, Vec<bool>), RunError> {
        let graph = self.graph;
        // Writes saved by an earlier attempt at this step (a crash, a failure, an interrupt).
        let mut saved: HashMap<String, Vec<(String, Value)>> = HashMap::new();
        if let (true, Some(saver), Some(cp)) = (first, &self.saver, pos.checkpoint_id) {
            for w in saver.writes(&self.thread_id, cp).await.map_err(cp_err)? {
                saved.insert(w.task_id, w.writes);
            }
        }
        let need_ids = self.saver.is_some() || self.events.is_some() || answering;
        let checkpoint_id = pos.checkpoint_id.unwrap_or(step);

        // Execute: expression nodes inline, calls collected for the async phase.
        let mut results: Vec<TaskResult> = Vec::with_capacity(tasks.len());
        let mut saved_flags: Vec<bool> = vec![false; tasks.len()];
        let mut jobs: Vec<(usize, Job, NodeContext)> = Vec::new();
        for (i, task) in tasks.iter().enumerate() {
            let node = &graph.nodes[task.node as usize];
            let id = if need_ids || !matches!(node.kind, Kind::Set(_)) {
                task_label(node, task)
            } else {
                String::new()
            };
            if let Some(writes) = saved.remove(&id) {
                let mut out = Vec::with_capacity(writes.len());
                for (name, value) in writes {
                    if let Some(ch) = graph.write_channel(&name) {
                        out.push((ch, value));
                    }
                }
                saved_flags[i] = true;
                results.push(TaskResult::Done(out));
                continue;
            }
            if self.events.is_some() {
                self.emit(|| Event::NodeStarted {
                    step,
                    node: node.name.to_string(),
                    task: id.clone(),
                });
            }
            let item = match &task.item {
                Some((v, i)) => Some((v, *i)),
                // A node that may receive work items, run without one, sees `item` as null.
                None if node.receives_items => Some((&Value::Null, 0)),
                None => None,
            };
            let node_err = |e: crate::expr::EvalError| RunError::Expression {
                node: node.name.to_string(),
                message: e.to_string(),
            };
            // Calls and subgraphs open theirs where they run (`run_jobs`).
            let span = match node.kind {
                Kind::Call { .. } | Kind::Subgraph { .. } => tracing::Span::none(),
                _ if !self.step_traced => tracing::Span::none(),
                _ => crate::trace::node(&node.name, task_or_node(&id, node), step),
            };
            let _in_node = span.enter();
            let result = match &node.kind {
                Kind::Set(assignments) => {
                    let mut writes = Vec::with_capacity(assignments.len());
                    let mut failure = None;
                    for (ch, expr) in assignments {
                        match expr.eval(state, item) {
                            Ok(v) => writes.push((*ch, v)),
                            Err(e) => {
                                failure = Some(node_err(e));
                                break;
                            }
                        }
                    }
                    if let (None, Some(next)) = (&failure, &node.next) {
                        match next.eval(state, item) {
                            Ok(choice) => match gotos(choice) {
                                Ok(list) => writes.extend(list.into_iter().map(|g| (GOTO, g))),
                                Err(message) => {
                                    failure = Some(RunError::Expression {
                                        node: node.name.to_string(),
                                        message: format!("next: {message}"),
                                    })
                                }
                            },
                            Err(e) => failure = Some(node_err(e)),
                        }
                    }
                    match failure {
                        Some(e) => TaskResult::Failed(e),
                        None => TaskResult::Done(writes),
                    }
                }
                Kind::Ask {
                    questions,
                    check,
                    reask,
                    single,
                    output,
                } => {
                    let answers = self.answers.get(&id).map_or(&[][..], Vec::as_slice);
                    match ask(
                        questions,
                        check.as_ref(),
                        reask.as_ref(),
                        answers,
                        state,
                        item,
                    ) {
                        Ok(Asked::Waiting(question)) => TaskResult::Interrupted(question),
                        Ok(Asked::Answered(mut got)) => {
                            let value = if *single {
                                got.pop().unwrap_or(Value::Null)
                            } else {
                                Value::Array(got)
                            };
                            TaskResult::Done(output.map(|ch| vec![(ch, value)]).unwrap_or_default())
                        }
                        Err(e) => TaskResult::Failed(node_err(e)),
                    }
                }
                Kind::Wait {
                    seconds,
                    until,
                    output,
                } => {
                    // On a later run the due time is the one fixed when the wait began.
                    let stored = self.answers.get(&id).and_then(|a| a.last());
                    let due =
                        match stored {
                            Some(value) => value
                                .get("until_ms")
                                .and_then(Value::as_u64)
                                .ok_or_else(|| RunError::Expression {
                                    node: node.name.to_string(),
                                    message: "the stored wait has no `until_ms`".into(),
                                }),
                            None => wait_due(seconds.as_ref(), until.as_ref(), state, item)
                                .map_err(|message| RunError::Expression {
                                    node: node.name.to_string(),
                                    message,
                                }),
                        };
                    match due {
                        Err(e) => TaskResult::Failed(e),
                        Ok(due) if due <= crate::checkpoint::now_ms() => TaskResult::Done(
                            output
                                .map(|ch| vec![(ch, Value::String(rfc3339(due)))])
                                .unwrap_or_default(),
                        ),
                        Ok(due) => TaskResult::Interrupted(serde_json::json!({
                            "until_ms": due,
                            "until": rfc3339(due),
                        })),
                    }
                }
                Kind::Call { handler, input, .. } => {
                    let input = match input {
                        Input::Mapping(mapping) => match eval_mapping(mapping, state, item) {
                            Ok(object) => Value::Object(object),
                            Err(e) => {
                                results.push(TaskResult::Failed(node_err(e)));
                                continue;
                            }
                        },
                        // A sent work item is the node's whole input, as in LangGraph.
                        Input::WholeState => match (&task.item, task.sent) {
                            (Some((arg, _)), true) => arg.clone(),
                            _ => state.to_json(),
                        },
                    };
                    let ctx = self.context(node, &id, step, checkpoint_id);
                    jobs.push((
                        i,
                        Job::Call {
                            handler: Arc::clone(handler),
                            input,
                        },
                        ctx,
                    ));
                    TaskResult::Pending
                }
                Kind::Subgraph {
                    graph: child,
                    input: mapping,
                    shared,
                    stateful,
                    ..
                } => {
                    let mut input = Map::new();
                    match mapping {
                        Some(mapping) => match eval_mapping(mapping, state, item) {
                            Ok(object) => input = object,
                            Err(e) => {
                                results.push(TaskResult::Failed(node_err(e)));
                                continue;
                            }
                        },
                        None => {
                            for &(parent, c) in shared {
                                input.insert(
                                    child.channels[c as usize].name.clone(),
                                    state.values[parent as usize].clone(),
                                );
                            }
                            // A work item sent to a subgraph is its input, over the shared
                            // values.
                            if let (Some((Value::Object(arg), _)), true) = (&task.item, task.sent) {
                                for (k, v) in arg {
                                    input.insert(k.clone(), v.clone());
                                }
                            }
                        }
                    }
                    let ctx = self.context(node, &id, step, checkpoint_id);
                    jobs.push((
                        i,
                        Job::Subgraph {
                            graph: Arc::clone(child),
                            input: Value::Object(input),
                            stateful: *stateful,
                        },
                        ctx,
                    ));
                    TaskResult::Pending
                }
            };
            if let TaskResult::Failed(e) = &result {
                crate::trace::fail(&span, &e.to_string());
            }
            results.push(result);
        }

        // Execute the async jobs: inline when alone, in parallel otherwise.
        if !jobs.is_empty() {
            self.run_jobs(jobs, tasks, &mut results, &mut saved_flags)
                .await?;
        }

        Ok((results, saved_flags))
    }

    /// Commit: a failed task fails the step; an interrupted one stops it (its finished
    /// siblings' writes saved for the resume and shown in the state, as LangGraph does);
    /// otherwise every write folds into `state` in task order.
    async fn commit(
        &mut self,
        state: &mut State,
        pos: &Position,
        step: u64,
        tasks: &[Task],
        mut results: Vec<TaskResult>,
        saved_flags: &[bool],
    ) -> Result<StepEnd, RunError> {
        let graph = self.graph;
        // A failed or interrupted task stops the step; save what finished so resuming
        // re-runs only the rest.
        let failed = results
            .iter()
            .position(|r| matches!(r, TaskResult::Failed(_)));
        let interrupted = results
            .iter()
            .position(|r| matches!(r, TaskResult::Interrupted(_)));
        if failed.is_some() || interrupted.is_some() {
            if let (Some(saver), Some(cp)) = (&self.saver, pos.checkpoint_id) {
                for (i, r) in results.iter().enumerate() {
                    if let (TaskResult::Done(writes), false) = (r, saved_flags[i]) {
                        let node = &graph.nodes[tasks[i].node as usize];
                        let record = TaskWrites {
                            task_id: task_label(node, &tasks[i]),
                            node: node.name.to_string(),
                            writes: writes
                                .iter()
                                .map(|(ch, v)| (graph.write_name(*ch).to_string(), v.clone()))
                                .collect(),
                        };
                        saver
                            .put_writes(&self.thread_id, cp, &record, self.lease.as_ref())
                            .await
                            .map_err(cp_err)?;
                    }
                }
            }
            if let Some(i) = failed
                && let TaskResult::Failed(e) =
                    std::mem::replace(&mut results[i], TaskResult::Pending)
            {
                // For error trackers (Sentry): a node failed after its last attempt.
                tracing::error!(
                    target: "brainops::failure",
                    graph = %graph.name,
                    node = %graph.nodes[tasks[i].node as usize].name,
                    thread = %self.thread_id,
                    step,
                    "node failed: {e}"
                );
                return Err(e);
            }
            if interrupted.is_some() {
                // Every waiting task of the step, in task order: the first, then siblings.
                let mut waiting: Vec<InterruptInfo> = Vec::new();
                for (i, r) in results.iter_mut().enumerate() {
                    if !matches!(r, TaskResult::Interrupted(_)) {
                        continue;
                    }
                    let TaskResult::Interrupted(value) = std::mem::replace(r, TaskResult::Pending)
                    else {
                        continue;
                    };
                    let node = &graph.nodes[tasks[i].node as usize];
                    let info = InterruptInfo {
                        kind: if matches!(node.kind, Kind::Wait { .. }) {
                            InterruptKind::Wait
                        } else {
                            InterruptKind::Ask
                        },
                        node: node.name.to_string(),
                        task: task_label(node, &tasks[i]),
                        value,
                        siblings: Vec::new(),
                    };
                    self.announce(&info);
                    waiting.push(info);
                }
                let mut waiting = waiting.into_iter();
                let Some(mut info) = waiting.next() else {
                    return Err(RunError::Thread {
                        message: "a task was interrupted but no question was recorded".into(),
                    });
                };
                info.siblings = waiting.collect();
                // As in LangGraph, the state at an interrupt includes what the step's
                // finished tasks wrote (saved above as pending writes, committed on resume).
                if self.fold(state, tasks, results, step, false).is_err() {
                    state.undo(&mut self.undo);
                }
                return Ok(StepEnd::Interrupted(info));
            }
        }

        // Update: fold the writes in task order.
        let deltas = self.fold(state, tasks, results, step, self.saver.is_some())?;
        Ok(StepEnd::Committed(deltas))
    }

    /// Folds finished tasks' writes into `state` in task order, noting in `self.undo` how
    /// to take them back; returns the deltas to store when `keep_deltas`.
    pub(super) fn fold(
        &mut self,
        state: &mut State,
        tasks: &[Task],
        results: Vec<TaskResult>,
        step: u64,
        keep_deltas: bool,
    ) -> Result<Vec<ChannelDelta>, RunError> {
        let graph = self.graph;
        let mut deltas: Vec<ChannelDelta> = Vec::new();
        for (i, result) in results.into_iter().enumerate() {
            let TaskResult::Done(writes) = result else {
                continue;
            };
            let node = &graph.nodes[tasks[i].node as usize];
            let update = if self.events.is_some() {
                Some(Value::Object(
                    writes
                        .iter()
                        .filter(|(ch, _)| *ch != GOTO)
                        .map(|(ch, v)| (graph.channels[*ch as usize].name.clone(), v.clone()))
                        .collect(),
                ))
            } else {
                None
            };
            for (ch, value) in writes {
                if ch == GOTO {
                    let (target, arg) = self.check_goto(node, &tasks[i], value)?;
                    self.gotos.push((tasks[i].node, target, arg));
                    continue;
                }
                let channel = &graph.channels[ch as usize];
                let bad_write = |message: String| RunError::BadWrite {
                    node: task_label(node, &tasks[i]),
                    channel: channel.name.clone(),
                    message,
                };
                // LangGraph's `Overwrite`: one per channel and step; after it, the step's
                // other writes to the channel are dropped.
                let value = if crate::channel::is_overwrite(&value) {
                    if self.overwritten[ch as usize] == step {
                        return Err(bad_write(
                            "a channel can take only one overwrite per super-step".into(),
                        ));
                    }
                    self.overwritten[ch as usize] = step;
                    if channel.reducer == crate::channel::Reducer::Replace {
                        crate::channel::overwrite(value).unwrap_or_else(|v| v)
                    } else {
                        value
                    }
                } else if self.overwritten[ch as usize] == step {
                    continue;
                } else {
                    value
                };
                if channel.reducer == crate::channel::Reducer::Replace {
                    let (last_step, last_task) = self.writer[ch as usize];
                    if last_step == step {
                        let other = &tasks[last_task];
                        return Err(RunError::ReplaceConflict {
                            channel: channel.name.clone(),
                            first: task_label(&graph.nodes[other.node as usize], other),
                            second: task_label(node, &tasks[i]),
                            step,
                        });
                    }
                    self.writer[ch as usize] = (step, i);
                    if !channel.ty.accepts(&value) {
                        return Err(bad_write(format!(
                            "expected {}, got {}",
                            crate::graph::type_name(channel.ty),
                            crate::channel::kind(&value)
                        )));
                    }
                    if keep_deltas {
                        deltas.retain(|d| !matches!(d, ChannelDelta::Set { channel: c, .. } if *c == channel.name));
                        deltas.push(ChannelDelta::Set {
                            channel: channel.name.clone(),
                            value: value.clone(),
                        });
                    }
                    let old = std::mem::replace(&mut state.values[ch as usize], value);
                    state.invalidate(ch);
                    self.undo.push((ch, Undo::Restore(old)));
                } else {
                    if keep_deltas {
                        let existing = deltas.iter_mut().find_map(|d| match d {
                            ChannelDelta::Reduce { channel: c, writes } if *c == channel.name => {
                                Some(writes)
                            }
                            _ => None,
                        });
                        match existing {
                            Some(list) => list.push(value.clone()),
                            None => deltas.push(ChannelDelta::Reduce {
                                channel: channel.name.clone(),
                                writes: vec![value.clone()],
                            }),
                        }
                    }
                    state
                        .fold_logged(graph, ch, value, &mut self.undo, &mut self.undo_scratch)
                        .map_err(bad_write)?;
                }
            }
            if let Some(update) = update {
                self.emit(|| Event::NodeFinished {
                    step,
                    node: node.name.to_string(),
                    task: task_label(node, &tasks[i]),
                    update,
                });
            }
        }
        Ok(deltas)
    }
}

/// A node's `args`/`input` mapping evaluated into an object, or the first failure.
fn eval_mapping(
    mapping: &[(String, crate::expr::Expr)],
    state: &State,
    item: Option<(&Value, usize)>,
) -> Result<Map<String, Value>, crate::expr::EvalError> {
    let mut object = Map::with_capacity(mapping.len());
    for (key, expr) in mapping {
        object.insert(key.clone(), expr.eval(state, item)?);
    }
    Ok(object)
}

/// Where an ask node stands after its answers so far.
enum Asked {
    /// A question waits for an answer.
    Waiting(Value),
    /// Every question has an accepted answer.
    Answered(Vec<Value>),
}

/// Plays an ask node's answers so far against its questions: each question takes the next
/// answer; one `check` refuses is asked again (`reask`, else the question), so a question
/// is asked until it gets an accepted answer.
fn ask(
    questions: &[crate::graph::Template],
    check: Option<&crate::expr::Expr>,
    reask: Option<&crate::graph::Template>,
    answers: &[Value],
    state: &State,
    item: Option<(&Value, usize)>,
) -> Result<Asked, crate::expr::EvalError> {
    let mut answers = answers.iter();
    let mut accepted = Vec::with_capacity(questions.len());
    for question in questions {
        let mut refused: Option<&Value> = None;
        loop {
            let Some(answer) = answers.next() else {
                let text = match (refused, reask) {
                    (Some(a), Some(r)) => r.render(state, item, Some(a))?,
                    _ => question.render(state, item, refused)?,
                };
                return Ok(Asked::Waiting(text));
            };
            let ok = match check {
                Some(c) => c.eval_answer(state, item, Some(answer))? == Value::Bool(true),
                None => true,
            };
            if ok {
                accepted.push(answer.clone());
                break;
            }
            refused = Some(answer);
        }
    }
    Ok(Asked::Answered(accepted))
}

impl Execution<'_> {
    /// A route a task chose, checked against its node's `goto` list: where it goes, and
    /// the work item's input for a `Send`.
    fn check_goto(
        &self,
        node: &CompiledNode,
        task: &Task,
        value: Value,
    ) -> Result<(Target, Option<Value>), RunError> {
        let bad = |message: String| RunError::BadWrite {
            node: task_label(node, task),
            channel: "goto".into(),
            message,
        };
        let goto: crate::node::Goto = serde_json::from_value(value).map_err(|e| {
            bad(format!(
                "a route is a node name or {{node, arg}}, not this ({e})"
            ))
        })?;
        let target = match goto.node() {
            crate::graph::END => Some(Target::End),
            name => self.graph.node_id(name).map(Target::Node).or_else(|| {
                // An agent's name routes to the node in the list that runs that agent.
                node.goto.iter().copied().find(|t| {
                    matches!(t, Target::Node(n)
                        if self.graph.nodes[*n as usize].agent.as_deref() == Some(name))
                })
            }),
        };
        if let Some(t) = target.filter(|t| node.goto.contains(t))
            && !(matches!(goto, crate::node::Goto::Send { .. }) && t == Target::End)
        {
            return Ok(match goto {
                crate::node::Goto::Send { arg, .. } => (t, Some(arg)),
                crate::node::Goto::Node(_) => (t, None),
            });
        }
        let allowed: Vec<String> = node
            .goto
            .iter()
            .map(|t| match t {
                Target::End => crate::graph::END.to_string(),
                Target::Node(n) => self.graph.nodes[*n as usize].name.to_string(),
            })
            .collect();
        Err(bad(if allowed.is_empty() {
            format!(
                "it routed to `{}` but declares no `goto` list; add goto = [\"{}\"] to the node",
                goto.node(),
                goto.node()
            )
        } else if matches!(goto, crate::node::Goto::Send { .. }) && target == Some(Target::End) {
            "a work item cannot be sent to END".to_string()
        } else {
            format!(
                "`{}` is not in its goto list [{}]; add it there",
                goto.node(),
                allowed.join(", ")
            )
        }))
    }
}

/// The routes a `set` node's `next` gave: a node name, a list of names and `{node, arg}`
/// work items, or null for none.
fn gotos(choice: Value) -> Result<Vec<Value>, String> {
    match choice {
        Value::Null => Ok(Vec::new()),
        Value::String(_) => Ok(vec![choice]),
        Value::Object(ref o) if o.contains_key("node") => Ok(vec![choice]),
        Value::Array(list) => {
            for v in &list {
                if !(v.is_string() || v.get("node").is_some()) {
                    return Err(format!(
                        "expected node names or {{node: ..., arg: ...}} items, got {}",
                        crate::channel::kind(v)
                    ));
                }
            }
            Ok(list)
        }
        other => Err(format!(
            "expected a node name, a list of them, or {{node: ..., arg: ...}} items, got {}",
            crate::channel::kind(&other)
        )),
    }
}

/// When a `wait` node's sleep ends, in Unix milliseconds: now plus `seconds`, or `until`
/// (an RFC 3339 time, or Unix seconds).
fn wait_due(
    seconds: Option<&crate::expr::Expr>,
    until: Option<&crate::expr::Expr>,
    state: &State,
    item: Option<(&Value, usize)>,
) -> Result<u64, String> {
    let now = crate::checkpoint::now_ms();
    if let Some(expr) = seconds {
        let v = expr.eval(state, item).map_err(|e| e.to_string())?;
        return match v.as_f64() {
            Some(s) if s >= 0.0 && s.is_finite() => Ok(now.saturating_add((s * 1000.0) as u64)),
            _ => Err(format!(
                "wait.seconds: expected a non-negative number of seconds, got {v}"
            )),
        };
    }
    let Some(expr) = until else {
        return Ok(now);
    };
    let v = expr.eval(state, item).map_err(|e| e.to_string())?;
    match &v {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| (s * 1000.0) as u64)
            .ok_or_else(|| format!("wait.until: expected Unix seconds, got {v}")),
        Value::String(text) => text
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond().max(0) as u64)
            .map_err(|e| {
                format!(
                    "wait.until: `{text}` is not an RFC 3339 time ({e}); e.g. 2026-12-24T09:00:00-06:00"
                )
            }),
        _ => Err(format!(
            "wait.until: expected an RFC 3339 time or Unix seconds, got {v}"
        )),
    }
}

/// A Unix-milliseconds time as RFC 3339 in UTC.
fn rfc3339(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// What a task's span calls it: its id, or its node's name where ids are not built.
fn task_or_node<'a>(id: &'a str, node: &'a CompiledNode) -> &'a str {
    if id.is_empty() { &node.name } else { id }
}
