//! The run's claim on its thread: saving the thread row, renewing the lease by heartbeat
//! and releasing it.

use super::*;

impl<'g> Execution<'g> {
    pub(super) async fn save_thread(
        &self,
        status: ThreadStatus,
        checkpoint: Option<u64>,
        interrupt: Option<InterruptInfo>,
        error: Option<&RunError>,
    ) -> Result<(), RunError> {
        let Some(saver) = self.saver.clone() else {
            return Ok(());
        };
        let created = self
            .claimed
            .as_ref()
            .map_or(self.created_at_ms, |i| i.created_at_ms);
        // A running thread keeps this run's lease; any other status releases it.
        let keep = (status == ThreadStatus::Running)
            .then(|| self.renewed_lease())
            .flatten();
        saver
            .put_thread(
                &ThreadInfo {
                    thread_id: self.thread_id.to_string(),
                    graph: self.graph.name.clone(),
                    status,
                    last_checkpoint: checkpoint,
                    interrupt,
                    error: error.map(ToString::to_string),
                    lease: keep,
                    created_at_ms: created,
                    updated_at_ms: now_ms(),
                },
                self.lease.as_ref(),
            )
            .await
            .map_err(cp_err)
    }

    /// This run's lease, extended to `lease_ms` from now.
    pub(super) fn renewed_lease(&self) -> Option<Lease> {
        self.lease.as_ref().map(|l| Lease {
            owner: l.owner.clone(),
            until_ms: now_ms().saturating_add(self.lease_ms),
        })
    }

    /// Renews the lease every third of its length while the run goes on, so a long node
    /// call does not let another process take the thread over.
    pub(super) fn heartbeat(&self) -> Heartbeat {
        let (Some(saver), Some(lease)) = (self.saver.clone(), self.lease.clone()) else {
            return Heartbeat(None);
        };
        let (thread_id, lease_ms) = (self.thread_id.clone(), self.lease_ms);
        Heartbeat(Some(tokio::spawn(async move {
            let period = Duration::from_millis((lease_ms / 3).max(1));
            loop {
                tokio::time::sleep(period).await;
                let renewed = Lease {
                    owner: lease.owner.clone(),
                    until_ms: now_ms().saturating_add(lease_ms),
                };
                match saver.renew(&thread_id, &renewed).await {
                    Ok(()) => {}
                    Err(CheckpointError::Conflict { .. }) => return,
                    Err(e) => tracing::warn!(thread = %thread_id, "lease renewal failed: {e}"),
                }
            }
        })))
    }

    /// Gives the thread back as it was when a run that changed nothing claimed it.
    pub(super) async fn release_unchanged(&self) -> Result<(), CheckpointError> {
        let (Some(saver), Some(lease), Some(info)) = (&self.saver, &self.lease, &self.claimed)
        else {
            return Ok(());
        };
        if info.last_checkpoint.is_none() && info.status == ThreadStatus::Idle {
            // The claim created the thread; nothing of it is worth keeping.
            if saver
                .thread(&self.thread_id)
                .await?
                .is_some_and(|t| t.last_checkpoint.is_none())
            {
                return saver.delete_thread(&self.thread_id).await;
            }
        }
        let restored = ThreadInfo {
            lease: None,
            ..info.clone()
        };
        saver.put_thread(&restored, Some(lease)).await
    }
}
