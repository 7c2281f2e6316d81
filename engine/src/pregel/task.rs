//! Task execution: a task's context, calls and subgraphs run inline or in parallel, with
//! retry and timeout, and their writes saved as each finishes.

use super::*;

pub(super) fn task_label(node: &CompiledNode, task: &Task) -> String {
    match &task.item {
        Some((_, i)) if task.sent => format!("{}#{i}", node.name),
        Some((_, i)) => format!("{}[{i}]", node.name),
        None => node.name.to_string(),
    }
}

impl<'g> Execution<'g> {
    pub(super) fn context(
        &self,
        node: &CompiledNode,
        task_id: &str,
        step: u64,
        checkpoint_id: u64,
    ) -> NodeContext {
        NodeContext {
            thread_id: Arc::clone(&self.thread_id),
            node: Arc::clone(&node.name),
            task_id: Arc::from(task_id),
            step,
            checkpoint_id,
            attempt: 1,
            answers: self
                .answers
                .get(task_id)
                .map_or_else(|| Arc::from(Vec::new()), |a| Arc::from(a.as_slice())),
            fresh_answer: self.fresh_answers.get(task_id).cloned(),
            asked: Arc::default(),
            events: self.events.clone(),
            usage: Some(Arc::clone(&self.usage)),
            outbox: self.saver.as_ref().map(|saver| crate::node::Outbox {
                saver: Arc::clone(saver),
                thread_id: Arc::clone(&self.thread_id),
            }),
            routes: None,
            context: Arc::clone(&self.context),
        }
    }

    pub(super) async fn run_jobs(
        &mut self,
        mut jobs: Vec<(usize, Job, NodeContext)>,
        tasks: &[Task],
        results: &mut [TaskResult],
        saved_flags: &mut [bool],
    ) -> Result<(), RunError> {
        let graph = self.graph;
        let cancel = self.cancel.clone();
        let cancelled = || async {
            match &cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending::<()>().await,
            }
        };
        if jobs.len() == 1 {
            if let Some((i, job, ctx)) = jobs.pop() {
                let node = &graph.nodes[tasks[i].node as usize];
                let saver = self.saver.clone();
                let span = crate::trace::node(&node.name, &ctx.task_id, ctx.step);
                let outcome = tokio::select! {
                    r = run_job(job, ctx, node.retry, node.timeout, saver).instrument(span) => r,
                    _ = cancelled() => return Err(RunError::Cancelled),
                };
                results[i] = self.job_result(i, tasks, outcome);
                self.save_task(i, tasks, results, saved_flags).await?;
            }
            return Ok(());
        }
        let mut set = JoinSet::new();
        // Which task each spawned job is, so a panic is reported against its node.
        let mut spawned: HashMap<tokio::task::Id, usize> = HashMap::with_capacity(jobs.len());
        for (i, job, ctx) in jobs {
            let node = &graph.nodes[tasks[i].node as usize];
            let (retry, timeout, saver) = (node.retry, node.timeout, self.saver.clone());
            let span = crate::trace::node(&node.name, &ctx.task_id, ctx.step);
            let handle = set.spawn(
                async move { (i, run_job(job, ctx, retry, timeout, saver).await) }.instrument(span),
            );
            spawned.insert(handle.id(), i);
        }
        loop {
            let joined = tokio::select! {
                j = set.join_next() => j,
                _ = cancelled() => {
                    set.abort_all();
                    return Err(RunError::Cancelled);
                }
            };
            let Some(joined) = joined else { break };
            match joined {
                Ok((i, outcome)) => {
                    results[i] = self.job_result(i, tasks, outcome);
                    self.save_task(i, tasks, results, saved_flags).await?;
                }
                Err(e) => {
                    let node = spawned
                        .get(&e.id())
                        .map(|&i| graph.nodes[tasks[i].node as usize].name.to_string())
                        .unwrap_or_default();
                    return Err(RunError::NodeFailed {
                        node,
                        attempts: 1,
                        message: format!("task panicked or was aborted: {e}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Saves a finished call's writes at once: it may have had side effects.
    pub(super) async fn save_task(
        &self,
        i: usize,
        tasks: &[Task],
        results: &[TaskResult],
        saved_flags: &mut [bool],
    ) -> Result<(), RunError> {
        let (Some(saver), TaskResult::Done(writes)) = (&self.saver, &results[i]) else {
            return Ok(());
        };
        let Some(cp) = self.current_checkpoint else {
            return Ok(());
        };
        let graph = self.graph;
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
        saved_flags[i] = true;
        Ok(())
    }

    pub(super) fn job_result(
        &self,
        i: usize,
        tasks: &[Task],
        outcome: Result<JobOutput, JobError>,
    ) -> TaskResult {
        let graph = self.graph;
        let node = &graph.nodes[tasks[i].node as usize];
        let name = task_label(node, &tasks[i]);
        match outcome {
            Err(JobError::Interrupt(value)) => TaskResult::Interrupted(value),
            Err(JobError::Timeout { seconds, attempts }) => TaskResult::Failed(RunError::Timeout {
                node: name,
                seconds,
                attempts,
            }),
            Err(JobError::Failed {
                message, attempts, ..
            }) => TaskResult::Failed(RunError::NodeFailed {
                node: name,
                attempts,
                message,
            }),
            Ok(JobOutput::Value(value, routes)) => {
                let output = match &node.kind {
                    Kind::Call { output, .. } => *output,
                    _ => None,
                };
                let routes = routes
                    .into_iter()
                    .map(|goto| (GOTO, serde_json::to_value(goto).unwrap_or_default()));
                match output {
                    Some(ch) => {
                        let mut writes = vec![(ch, value)];
                        writes.extend(routes);
                        TaskResult::Done(writes)
                    }
                    None => match value {
                        Value::Null => TaskResult::Done(routes.collect()),
                        Value::Object(map) => {
                            let mut writes = Vec::with_capacity(map.len());
                            for (key, v) in map {
                                match graph.channel_id(&key) {
                                    Some(ch) => writes.push((ch, v)),
                                    None => {
                                        return TaskResult::Failed(RunError::BadWrite {
                                            node: name,
                                            channel: key,
                                            message: "not a declared channel; declare it in [state] or give the node an `output`".into(),
                                        });
                                    }
                                }
                            }
                            writes.extend(routes);
                            TaskResult::Done(writes)
                        }
                        other => TaskResult::Failed(RunError::BadWrite {
                            node: name,
                            channel: "(none)".into(),
                            message: format!(
                                "a node without `output` must return an object of channel updates, got {}; add `output = \"channel\"`",
                                crate::channel::kind(&other)
                            ),
                        }),
                    },
                }
            }
            Ok(JobOutput::Subgraph(child_state, initial)) => {
                let Kind::Subgraph {
                    graph: child,
                    write_back: pairs,
                    output,
                    ..
                } = &node.kind
                else {
                    return TaskResult::Done(Vec::new());
                };
                let mut writes = Vec::new();
                for &(parent, c) in pairs {
                    let channel = &child.channels[c as usize];
                    let key = &channel.name;
                    let Some(after) = child_state.get(key) else {
                        continue;
                    };
                    // A channel the input did not give started at its default.
                    let before = initial.get(key).unwrap_or(&channel.default);
                    if after == before {
                        continue;
                    }
                    if let Some(w) =
                        write_back(&graph.channels[parent as usize].reducer, before, after)
                    {
                        writes.push((parent, w));
                    }
                }
                if let Some(ch) = output {
                    writes.push((*ch, child_state.clone()));
                }
                TaskResult::Done(writes)
            }
        }
    }
}

/// Runs a call or subgraph with retry (exponential backoff with jitter) and a per-attempt
/// timeout.
pub(super) async fn run_job(
    job: Job,
    ctx: NodeContext,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    saver: Option<Arc<dyn Checkpointer>>,
) -> Result<JobOutput, JobError> {
    let attempts = AtomicU32::new(0);
    let job = &job;
    let ctx = &ctx;
    let attempt = || async {
        let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
        let mut ctx = ctx.clone();
        ctx.attempt = n;
        ctx.routes = Some(Arc::default());
        ctx.asked = Arc::default();
        let work = async {
            match job {
                Job::Call { handler, input } => handler
                    .call(input.clone(), &ctx)
                    .await
                    .map(|value| JobOutput::Value(value, ctx.take_routes()))
                    .map_err(|e| match e {
                        NodeError::Interrupt(v) => JobError::Interrupt(v),
                        NodeError::Failed { message, retryable } => JobError::Failed {
                            message,
                            attempts: n,
                            retryable,
                        },
                    }),
                Job::Subgraph {
                    graph,
                    input,
                    stateful,
                } => run_subgraph(graph, input, *stateful, &ctx, saver.clone()).await,
            }
        };
        let work = ctx.scope(work);
        let outcome = match timeout {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(r) => r,
                Err(_) => Err(JobError::Timeout {
                    seconds: limit.as_secs_f64(),
                    attempts: n,
                }),
            },
            None => work.await,
        };
        if let Err(e) = &outcome {
            mark_failed(e);
        }
        outcome
    };
    if retry.max_attempts <= 1 {
        return attempt().await;
    }
    // A node that retries gets a span per attempt under its task's.
    let attempt = || {
        let n = attempts.load(Ordering::SeqCst) + 1;
        attempt().instrument(crate::trace::attempt(n))
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(retry.initial)
        .with_max_delay(retry.max)
        .with_factor(retry.multiplier)
        .with_max_times(retry.max_attempts.saturating_sub(1) as usize)
        .with_jitter();
    attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| {
            matches!(
                e,
                JobError::Timeout { .. }
                    | JobError::Failed {
                        retryable: true,
                        ..
                    }
            )
        })
        .await
}

/// Marks the current span (the task's, or its attempt's) failed, unless it only waits for
/// a person.
fn mark_failed(e: &JobError) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let message = match e {
        JobError::Interrupt(_) => return,
        JobError::Failed { message, .. } => message.clone(),
        JobError::Timeout { seconds, .. } => format!("timed out after {seconds}s"),
    };
    crate::trace::fail(&span, &message);
}
