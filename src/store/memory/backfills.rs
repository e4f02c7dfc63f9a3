//! The memory store's backfills: beside the ledger in the same state, so a step and its run are one change.

use chrono::{DateTime, Utc};

use super::{MemoryStore, State, runs_of};
use crate::backfill::{Backfill, BackfillState, BackfillStep, RunCounts, StepOutcome, advanced};
use crate::store::{StoreError, StoreResult};

fn counted(state: &mut State, backfill: &Backfill) -> Backfill {
    let prefix = Backfill::key_prefix(&backfill.id);
    let mut runs = RunCounts::default();
    for run in runs_of(&mut state.runs, &backfill.job_id) {
        if run.idempotency_key.starts_with(&prefix) {
            runs.add(run.status, 1);
        }
    }
    Backfill { runs, ..backfill.clone() }
}

impl MemoryStore {
    pub(super) async fn create_backfill_in(&self, backfill: &Backfill) -> StoreResult<()> {
        let mut state = self.state.lock().await;
        if state.backfills.contains_key(&backfill.id) {
            return Err(StoreError::Conflict(format!("backfill {:?} exists", backfill.id)));
        }
        state.backfills.insert(backfill.id.clone(), backfill.clone());
        Ok(())
    }

    pub(super) async fn get_backfill_in(&self, id: &str) -> StoreResult<Option<Backfill>> {
        let mut state = self.state.lock().await;
        let Some(backfill) = state.backfills.get(id).cloned() else { return Ok(None) };
        Ok(Some(counted(&mut state, &backfill)))
    }

    pub(super) async fn list_backfills_in(&self, job_id: &str) -> StoreResult<Vec<Backfill>> {
        let mut state = self.state.lock().await;
        let mut found: Vec<Backfill> =
            state.backfills.values().filter(|backfill| backfill.job_id == job_id).cloned().collect();
        found.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(found.iter().map(|backfill| counted(&mut state, backfill)).collect())
    }

    pub(super) async fn cancel_backfill_in(&self, id: &str) -> StoreResult<Option<Backfill>> {
        let mut state = self.state.lock().await;
        let Some(backfill) = state.backfills.get_mut(id) else { return Ok(None) };
        if backfill.state == BackfillState::Running {
            backfill.state = BackfillState::Cancelled;
        }
        let backfill = backfill.clone();
        Ok(Some(counted(&mut state, &backfill)))
    }

    pub(super) async fn due_backfills_in(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Backfill>> {
        let state = self.state.lock().await;
        let mut due: Vec<Backfill> = (state.backfills.values())
            .filter(|backfill| backfill.state == BackfillState::Running && backfill.next_step_at <= now)
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.next_step_at, &a.id).cmp(&(b.next_step_at, &b.id)));
        due.truncate(limit);
        Ok(due)
    }

    pub(super) async fn step_backfill_in(&self, step: &BackfillStep) -> StoreResult<StepOutcome> {
        let mut state = self.state.lock().await;
        let read = &step.backfill;
        match state.backfills.get(&read.id) {
            Some(now) if now.state == BackfillState::Running && now.position == read.position => {}
            _ => return Ok(StepOutcome::Lost),
        }
        let outcome = match &step.run {
            None => StepOutcome::Finished,
            Some(run) => {
                let active = runs_of(&mut state.runs, &run.job_id).filter(|run| run.status.is_unfinished()).count();
                if active >= step.max_instances as usize {
                    return Ok(StepOutcome::Full);
                }
                match state.insert_run(run) {
                    Ok(()) => StepOutcome::Inserted(run.clone()),
                    Err(StoreError::Conflict(_)) => StepOutcome::Skipped,
                    Err(err) => return Err(err),
                }
            }
        };
        let backfill = advanced(step, outcome == StepOutcome::Skipped);
        state.backfills.insert(backfill.id.clone(), backfill);
        Ok(outcome)
    }
}
