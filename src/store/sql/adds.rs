//! New jobs, many a transaction. An API add was five round trips and a commit of its own (insert, label rows, audit
//! entry), one add at a time on SQLite's single writer: 0.17× the database's own insert rate. Adds waiting together
//! now go in one transaction of three statements (jobs, labels, audit entries), each answered on its own: a job
//! whose id is taken is a conflict for that add alone, and a batch that fails for another reason is tried again one
//! job at a time, so one bad job never fails the jobs that came with it.

use std::collections::HashSet;

use sqlx::{Executor, FromRow, IntoArguments, Pool};

use super::{Args, Conn, DbRow, Dialect, Param, Statement, job_columns, labels, store_error};
use crate::audit::AuditEntry;
use crate::job::Job;
use crate::store::{StoreError, StoreResult};

use super::rows::{audit_params, job_params};

/// Adds in one transaction at most: a burst of clients' adds travels together; a statement stays far below any
/// database's parameter limit (21 a job).
pub const BATCH: usize = 128;

/// Batches in flight at once where the database takes writers side by side.
pub const PARALLEL_BATCHES: usize = 4;

/// A job to insert (its id not yet taken) and the audit entry recorded with it.
#[derive(Debug)]
pub struct NewJob {
    pub job: Job,
    pub audit: Option<AuditEntry>,
}

/// Insert `adds`, each answered in order: `Conflict` for an id that is taken (by a stored job, or by an earlier add
/// of the same batch).
pub async fn insert_new_jobs<D: Dialect>(pool: &Pool<D::Db>, dialect: &D, adds: Vec<NewJob>) -> Vec<StoreResult<()>>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
    (String,): for<'r> FromRow<'r, DbRow<D>>,
{
    let _writer = match dialect.writer() {
        Some(writer) => Some(writer.lock().await),
        None => None,
    };
    let mut ids = HashSet::with_capacity(adds.len());
    let first_of_id: Vec<bool> = adds.iter().map(|add| ids.insert(add.job.id.as_str())).collect();
    let distinct: Vec<&NewJob> =
        adds.iter().zip(&first_of_id).filter(|(_, first)| **first).map(|(add, _)| add).collect();
    let inserted = match insert_in_one_transaction::<D>(pool, &distinct).await {
        Ok(inserted) => inserted,
        Err(err) if distinct.len() <= 1 => return adds.iter().map(|_| Err(copy(&err))).collect(),
        Err(_) => {
            let mut inserted = HashSet::new();
            let mut failed = Vec::new();
            for add in &distinct {
                match insert_in_one_transaction::<D>(pool, &[add]).await {
                    Ok(one) => inserted.extend(one),
                    Err(err) => failed.push((add.job.id.clone(), err)),
                }
            }
            return answer(&adds, &first_of_id, &inserted, &failed);
        }
    };
    answer(&adds, &first_of_id, &inserted, &[])
}

fn answer(
    adds: &[NewJob],
    first_of_id: &[bool],
    inserted: &HashSet<String>,
    failed: &[(String, StoreError)],
) -> Vec<StoreResult<()>> {
    adds.iter()
        .zip(first_of_id)
        .map(|(add, first)| {
            if let Some((_, err)) = failed.iter().find(|(id, _)| *first && *id == add.job.id) {
                return Err(copy(err));
            }
            match *first && inserted.contains(&add.job.id) {
                true => Ok(()),
                false => Err(StoreError::Conflict(format!("job {:?} exists", add.job.id))),
            }
        })
        .collect()
}

/// Each waiting caller gets the batch's error.
fn copy(err: &StoreError) -> StoreError {
    match err {
        StoreError::Corrupt(message) => StoreError::Corrupt(message.clone()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// Insert `adds` (distinct ids) with their label rows and audit entries, all or none; the ids inserted (the others
/// were taken).
async fn insert_in_one_transaction<D: Dialect>(pool: &Pool<D::Db>, adds: &[&NewJob]) -> StoreResult<HashSet<String>>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
    (String,): for<'r> FromRow<'r, DbRow<D>>,
{
    let mut transaction = pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
    let mut inserted = HashSet::with_capacity(adds.len());
    let written = async {
        let mut insert = Statement::<D>::new(concat!("INSERT INTO jobs (", job_columns!(), ") VALUES "));
        for (index, add) in adds.iter().enumerate() {
            insert.push(if index > 0 { ", " } else { "" });
            push_row(&mut insert, job_params::<D::Json>(&add.job)?)?;
        }
        insert.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
        let Statement { sql, arguments } = insert;
        let rows: Vec<(String,)> = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments)
            .persistent(adds.len() == 1)
            .fetch_all(&mut *transaction)
            .await
            .map_err(store_error)?;
        inserted.extend(rows.into_iter().map(|(id,)| id));
        let new: Vec<&NewJob> = adds.iter().copied().filter(|add| inserted.contains(&add.job.id)).collect();
        let jobs: Vec<&Job> = new.iter().map(|add| &add.job).filter(|job| !job.labels.is_empty()).collect();
        labels::insert_labels::<D>(&mut transaction, &jobs).await?;
        let entries: Vec<&AuditEntry> = new.iter().filter_map(|add| add.audit.as_ref()).collect();
        insert_audit::<D>(&mut transaction, &entries).await
    }
    .await;
    match written {
        Ok(()) => transaction.commit().await.map_err(store_error)?,
        Err(err) => {
            // Explicitly: a dropped transaction rolls back only when its connection is next used.
            transaction.rollback().await.map_err(store_error)?;
            return Err(err);
        }
    }
    Ok(inserted)
}

/// Insert audit entries, many a statement.
pub async fn insert_audit<D: Dialect>(connection: &mut Conn<D>, entries: &[&AuditEntry]) -> StoreResult<()>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
{
    for chunk in entries.chunks(BATCH) {
        let mut insert = Statement::<D>::new(
            "INSERT INTO audit (id, recorded_at, actor, action, job_id, reason, job_before, job_after) VALUES ",
        );
        for (index, entry) in chunk.iter().enumerate() {
            insert.push(if index > 0 { ", " } else { "" });
            push_row(&mut insert, audit_params::<D::Json>(entry)?)?;
        }
        let Statement { sql, arguments } = insert;
        // One entry (a single change's) is the common statement, kept prepared; a batch's shape follows its size.
        sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments)
            .persistent(chunk.len() == 1)
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// `(p1, p2, …)`.
pub(super) fn push_row<'a, D: Dialect>(
    statement: &mut Statement<D>,
    params: impl IntoIterator<Item = Param<'a, D::Json>>,
) -> StoreResult<()> {
    statement.push("(");
    for (column, param) in params.into_iter().enumerate() {
        if column > 0 {
            statement.push(", ");
        }
        statement.param(param)?;
    }
    statement.push(")");
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::job::Job;
    use crate::store::StoreError;
    use crate::store::contract::{at, job, postgres_fixture};

    #[tokio::test]
    async fn a_job_the_database_refuses_fails_alone_and_the_rest_of_its_batch_goes_in() {
        let fixture = postgres_fixture().await;
        let store = fixture.store();
        // PostgreSQL's text holds no NUL byte: its insert fails as no conflict does.
        let refused = Job { name: Some("nul \0 byte".into()), ..job("refused", Some(at(10))) };
        let jobs = [job("a", Some(at(10))), refused, job("b", Some(at(20)))];
        // A current-thread runtime: the writer task first runs once all three are queued, so they are one batch.
        let answers = futures::future::join_all(jobs.iter().map(|job| store.add_job(job, false))).await;
        assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
        assert!(
            matches!(&answers[1], Err(StoreError::Unavailable(message)) if message.contains("0x00")),
            "{answers:?}"
        );
        assert_eq!(store.get_job("a").await.unwrap(), Some(jobs[0].clone()));
        assert_eq!(store.get_job("b").await.unwrap(), Some(jobs[2].clone()));
        assert_eq!(store.get_job("refused").await.unwrap(), None);
    }
}
