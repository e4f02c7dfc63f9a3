//! Batched writes. A delivery records its run twice (`running`, then the outcome); at a burst's rate one statement
//! and one commit per record were most of the work (perf: round trips and, on PostgreSQL, a WAL flush per commit).
//! API adds were the same: five round trips and a commit for each job. A `Batcher` takes every item waiting when
//! it is free and saves them together, so the number of commits falls as the load rises, while a lone item still
//! goes out at once.

use std::collections::HashSet;
use std::future::Future;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, StoreResult};
use crate::job::Run;

/// Runs saved in one statement at most: large enough that a burst's records travel together, small enough to keep
/// each statement (and the write lock it holds) short.
const BATCH: usize = 256;

type Waiting<T, R> = (T, oneshot::Sender<R>);

/// A task saving what callers submit, many items a call: each caller gets its own item's answer.
#[derive(Debug)]
pub struct Batcher<T, R> {
    waiting: mpsc::UnboundedSender<Waiting<T, R>>,
}

/// By hand: a derive would ask that the items be `Clone`.
impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher { waiting: self.waiting.clone() }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Start the task. `save` gets at most `limit` items, in the order submitted, and answers one result for each,
    /// in the same order; up to `parallel` calls run at once (1 keeps the batches in order). The task ends when the
    /// last handle is dropped.
    pub fn spawn<Save, Saving>(limit: usize, parallel: usize, save: Save) -> Batcher<T, R>
    where
        Save: Fn(Vec<T>) -> Saving + Send + 'static,
        Saving: Future<Output = Vec<R>> + Send + 'static,
    {
        let (waiting, queue) = mpsc::unbounded_channel();
        tokio::spawn(serve(queue, limit, parallel.max(1), save));
        Batcher { waiting }
    }

    /// Save `item` with whatever else is waiting; `None` when the task has stopped (or answered no result for it).
    /// A caller that stops waiting does not take its item back: it is saved all the same.
    pub async fn submit(&self, item: T) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.waiting.send((item, reply)).ok()?;
        answer.await.ok()
    }
}

async fn serve<T, R, Save, Saving>(
    mut queue: mpsc::UnboundedReceiver<Waiting<T, R>>,
    limit: usize,
    parallel: usize,
    save: Save,
) where
    Save: Fn(Vec<T>) -> Saving,
    Saving: Future<Output = Vec<R>>,
{
    let mut batch = Vec::with_capacity(limit);
    let mut saving = FuturesUnordered::new();
    loop {
        tokio::select! {
            received = queue.recv_many(&mut batch, limit), if saving.len() < parallel => {
                if received == 0 {
                    break;
                }
                let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.drain(..).unzip();
                let saved = save(items);
                saving.push(async move {
                    for (reply, result) in replies.into_iter().zip(saved.await) {
                        // The caller may have given up waiting.
                        let _ = reply.send(result);
                    }
                });
            }
            Some(()) = saving.next(), if !saving.is_empty() => {}
        }
    }
    while saving.next().await.is_some() {}
}

/// The ledger's batched `update_run`.
#[derive(Clone, Debug)]
pub struct RunRecorder {
    batcher: Batcher<Run, StoreResult<()>>,
}

impl RunRecorder {
    /// Start the recorder task. `save` writes its runs (one per idempotency key, the latest update of each) in one
    /// statement and answers the keys of those it found. The task ends when the last handle is dropped.
    pub fn spawn<Save, Saving>(save: Save) -> RunRecorder
    where
        Save: Fn(Vec<Run>) -> Saving + Send + 'static,
        Saving: Future<Output = StoreResult<HashSet<String>>> + Send + 'static,
    {
        // One batch at a time: a run's updates are saved in the order they were made.
        let batcher = Batcher::spawn(BATCH, 1, move |batch: Vec<Run>| {
            let keys: Vec<String> = batch.iter().map(|run| run.idempotency_key.clone()).collect();
            // Later updates of a run supersede earlier ones in the same batch: newest first, keep the first seen.
            let mut seen = HashSet::with_capacity(batch.len());
            let runs: Vec<Run> =
                batch.into_iter().rev().filter(|run| seen.insert(run.idempotency_key.clone())).collect();
            let saving = save(runs);
            async move {
                let outcome = saving.await;
                keys.into_iter()
                    .map(|key| match &outcome {
                        Ok(found) if found.contains(&key) => Ok(()),
                        Ok(_) => Err(StoreError::NotFound),
                        Err(StoreError::Corrupt(message)) => Err(StoreError::Corrupt(message.clone())),
                        Err(other) => Err(StoreError::Unavailable(other.to_string())),
                    })
                    .collect()
            }
        });
        RunRecorder { batcher }
    }

    /// Save a run's progress; answers once it is committed (or failed).
    pub async fn record(&self, run: &Run) -> StoreResult<()> {
        match self.batcher.submit(run.clone()).await {
            Some(outcome) => outcome,
            None => Err(StoreError::Unavailable("the run recorder has stopped".into())),
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
            removed_job: None,
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
