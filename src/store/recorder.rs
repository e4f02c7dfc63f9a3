//! Batched ledger writes for `update_run`. A delivery records its run twice (`running`, then the outcome); at a
//! burst's rate one statement and one commit per record were most of the work (perf: round trips and, on
//! PostgreSQL, a WAL flush per commit). The recorder takes every update waiting when it is free and saves them in
//! one statement, so the number of commits falls as the load rises, while a lone update still goes out at once.

use std::collections::HashSet;
use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::{StoreError, StoreResult};
use crate::job::Run;

/// Runs saved in one statement at most: large enough that a burst's records travel together, small enough to keep
/// each statement (and the write lock it holds) short.
const BATCH: usize = 256;

type RunUpdate = (Run, oneshot::Sender<StoreResult<()>>);

#[derive(Clone, Debug)]
pub struct RunRecorder {
    waiting: mpsc::UnboundedSender<RunUpdate>,
}

impl RunRecorder {
    /// Start the recorder task. `save` writes its runs (one per idempotency key, the latest update of each) in one
    /// statement and answers the keys of those it found. The task ends when the last handle is dropped.
    pub fn spawn<Save, Saving>(save: Save) -> RunRecorder
    where
        Save: Fn(Vec<Run>) -> Saving + Send + 'static,
        Saving: Future<Output = StoreResult<HashSet<String>>> + Send + 'static,
    {
        let (waiting, queue) = mpsc::unbounded_channel();
        tokio::spawn(record(queue, save));
        RunRecorder { waiting }
    }

    /// Save a run's progress; answers once it is committed (or failed).
    pub async fn record(&self, run: &Run) -> StoreResult<()> {
        let stopped = || StoreError::Unavailable("the run recorder has stopped".into());
        let (reply, outcome) = oneshot::channel();
        self.waiting.send((run.clone(), reply)).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

async fn record<Save, Saving>(mut queue: mpsc::UnboundedReceiver<RunUpdate>, save: Save)
where
    Save: Fn(Vec<Run>) -> Saving,
    Saving: Future<Output = StoreResult<HashSet<String>>>,
{
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let mut replies = Vec::with_capacity(batch.len());
        let mut runs = Vec::with_capacity(batch.len());
        let mut saved = HashSet::with_capacity(batch.len());
        // Later updates of a run supersede earlier ones in the same batch: newest first, keep the first seen.
        for (run, reply) in batch.drain(..).rev() {
            replies.push((run.idempotency_key.clone(), reply));
            if saved.insert(run.idempotency_key.clone()) {
                runs.push(run);
            }
        }
        let outcome = save(runs).await;
        for (key, reply) in replies {
            let result = match &outcome {
                Ok(found) if found.contains(&key) => Ok(()),
                Ok(_) => Err(StoreError::NotFound),
                Err(StoreError::Corrupt(message)) => Err(StoreError::Corrupt(message.clone())),
                Err(other) => Err(StoreError::Unavailable(other.to_string())),
            };
            // The caller may have given up waiting; the run is saved all the same.
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::RunStatus;
    use std::sync::{Arc, Mutex};

    fn run(key: &str, attempts: u32) -> Run {
        let time = chrono::DateTime::UNIX_EPOCH;
        Run {
            idempotency_key: key.to_string(),
            job_id: "job".to_string(),
            scheduled_time: time,
            kind: crate::job::RunKind::Scheduled,
            status: RunStatus::Running,
            attempts,
            started_at: Some(time),
            finished_at: None,
            http_status: None,
            duration_ms: None,
            error: None,
            response_excerpt: None,
            action: serde_json::from_value(serde_json::json!({"url": "http://127.0.0.1:1/"})).expect("an action"),
            executor: "default".to_string(),
            timezone: "UTC".to_string(),
            lease_expires_at: None,
            created_at: time,
        }
    }

    #[tokio::test]
    async fn updates_waiting_together_are_saved_in_one_call_and_the_latest_of_a_run_wins() {
        // Each call to `save`: the (key, attempts) of the runs it was given.
        type Calls = Arc<Mutex<Vec<Vec<(String, u32)>>>>;
        let calls: Calls = Arc::default();
        let entered = Arc::new(tokio::sync::Notify::new());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let recorder = {
            let (calls, entered, gate) = (calls.clone(), entered.clone(), gate.clone());
            RunRecorder::spawn(move |runs: Vec<Run>| {
                let (calls, entered, gate) = (calls.clone(), entered.clone(), gate.clone());
                async move {
                    entered.notify_one();
                    // Held until the test has queued the rest, so they wait together.
                    gate.acquire().await.expect("never closed").forget();
                    let mut saved: Vec<(String, u32)> =
                        runs.iter().map(|run| (run.idempotency_key.clone(), run.attempts)).collect();
                    saved.sort();
                    calls.lock().unwrap().push(saved);
                    Ok(runs.into_iter().map(|run| run.idempotency_key).filter(|key| key != "gone").collect())
                }
            })
        };
        let first = tokio::spawn({
            let recorder = recorder.clone();
            async move { recorder.record(&run("a", 1)).await }
        });
        entered.notified().await;
        let rest = [("a", 2), ("b", 1), ("a", 3), ("gone", 1)].map(|(key, attempts)| run(key, attempts));
        // join_all's first poll queues every update (a record sends before it first waits); then the gate opens.
        let (outcomes, ()) =
            tokio::join!(futures::future::join_all(rest.iter().map(|run| recorder.record(run))), async {
                tokio::task::yield_now().await;
                gate.add_permits(2);
            });
        first.await.unwrap().unwrap();
        assert!(outcomes[..3].iter().all(Result::is_ok), "{outcomes:?}");
        assert!(matches!(outcomes[3], Err(StoreError::NotFound)), "{outcomes:?}");
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 2, "the first update alone, then the four that waited together: {calls:?}");
        assert_eq!(calls[0], vec![("a".to_string(), 1)]);
        assert_eq!(calls[1], vec![("a".to_string(), 3), ("b".to_string(), 1), ("gone".to_string(), 1)]);
    }

    #[tokio::test]
    async fn a_failed_save_answers_every_waiting_update_with_the_error() {
        let recorder =
            RunRecorder::spawn(|_runs: Vec<Run>| async { Err(StoreError::Unavailable("connection refused".into())) });
        let outcome = recorder.record(&run("a", 1)).await;
        assert!(matches!(outcome, Err(StoreError::Unavailable(message)) if message.contains("connection refused")));
    }
}
