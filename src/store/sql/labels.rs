//! Labels in SQL, the same statements for every SQL store: a job's pairs are rows of `job_labels` (beside its map
//! in `jobs.labels`, which is what reading a job returns), and a selector becomes one condition per requirement
//! answered from that table's indexes (`migrations/*/0005_labels.sql`):
//! - `key=value`, `key in (…)`, `key`: `id IN (SELECT job_id FROM job_labels WHERE key = … [AND value IN …])`, from
//!   the (key, value, job_id) index;
//! - `key!=value`, `key notin (…)`, `!key`, which every job without the label meets: `NOT EXISTS (…)` on the job's
//!   own rows, from the (job_id, key) primary key (an anti-join; `NOT IN` would make PostgreSQL hash or rescan).
//!
//! Statements whose shape follows the input (the selector, a batch's size) are not kept prepared
//! (`persistent(false)`), so they do not push the store's hot statements out of each connection's cache.

use sqlx::{Executor, IntoArguments};

use super::{Args, Conn, Dialect, Param, Statement, job_params, store_error};
use crate::job::Job;
use crate::labels::{Operator, Selector};
use crate::store::StoreResult;

/// Rows per statement when writing labels: 3 parameters a row keeps a statement far below any database's limit.
const LABEL_ROWS_PER_STATEMENT: usize = 500;
/// Jobs per statement when saving a bulk change: one parameter per column, far below any database's limit.
pub const JOBS_PER_STATEMENT: usize = 500;

/// Appends, for each requirement of `selector`, the condition on `jobs` that it holds.
pub fn push_selector<D: Dialect>(sql: &mut Statement<D>, selector: &Selector) -> StoreResult<()> {
    for requirement in &selector.requirements {
        let values = match &requirement.operator {
            Operator::In(values) | Operator::NotIn(values) => Some(values),
            Operator::Exists | Operator::DoesNotExist => None,
        };
        if requirement.needs_label() {
            sql.push(" AND id IN (SELECT job_id FROM job_labels WHERE key = ");
        } else {
            sql.push(" AND NOT EXISTS (SELECT 1 FROM job_labels WHERE job_labels.job_id = jobs.id AND key = ");
        }
        sql.param(Param::Text(Some(&requirement.key)))?;
        if let Some(values) = values {
            sql.push(" AND value IN (");
            for (index, value) in values.iter().enumerate() {
                if index > 0 {
                    sql.push(", ");
                }
                sql.param(Param::Text(Some(value)))?;
            }
            sql.push(")");
        }
        sql.push(")");
    }
    Ok(())
}

/// Replace the label rows of `jobs` with their labels.
pub async fn write_labels<D: Dialect>(connection: &mut Conn<D>, jobs: &[&Job]) -> StoreResult<()>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
{
    for chunk in jobs.chunks(LABEL_ROWS_PER_STATEMENT) {
        let mut delete = Statement::<D>::new("DELETE FROM job_labels WHERE job_id IN (");
        for (index, job) in chunk.iter().enumerate() {
            if index > 0 {
                delete.push(", ");
            }
            delete.param(Param::Text(Some(&job.id)))?;
        }
        delete.push(")");
        execute(connection, delete).await?;
    }
    insert_labels::<D>(connection, jobs).await
}

/// Write the label rows of `jobs`, which have none yet.
pub async fn insert_labels<D: Dialect>(connection: &mut Conn<D>, jobs: &[&Job]) -> StoreResult<()>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
{
    let pairs: Vec<(&str, &str, &str)> = jobs
        .iter()
        .flat_map(|job| job.labels.iter().map(|(key, value)| (job.id.as_str(), key.as_str(), value.as_str())))
        .collect();
    for chunk in pairs.chunks(LABEL_ROWS_PER_STATEMENT) {
        let mut insert = Statement::<D>::new("INSERT INTO job_labels (job_id, key, value) VALUES ");
        for (index, (job_id, key, value)) in chunk.iter().enumerate() {
            insert.push(if index > 0 { ", (" } else { "(" });
            insert.param(Param::Text(Some(job_id)))?.push(", ");
            insert.param(Param::Text(Some(key)))?.push(", ");
            insert.param(Param::Text(Some(value)))?.push(")");
        }
        execute(connection, insert).await?;
    }
    Ok(())
}

/// Save `jobs`, which exist, as they are: every column, many jobs a statement.
pub async fn save_jobs<D: Dialect>(connection: &mut Conn<D>, jobs: &[Job]) -> StoreResult<()>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
{
    let columns: Vec<&str> = super::job_columns!().split(", ").collect();
    let set: Vec<String> = columns
        .iter()
        .filter(|column| **column != "id")
        .map(|column| format!("{column} = excluded.{column}"))
        .collect();
    for chunk in jobs.chunks(JOBS_PER_STATEMENT) {
        let mut upsert = Statement::<D>::new(format!("INSERT INTO jobs ({}) VALUES ", columns.join(", ")));
        for (index, job) in chunk.iter().enumerate() {
            upsert.push(if index > 0 { ", " } else { "" });
            super::adds::push_row(&mut upsert, job_params::<D::Json>(job)?)?;
        }
        // An upsert is the one multi-row update both databases write alike; the rows are locked (or the database
        // is), so it only ever updates.
        upsert.push(&format!(" ON CONFLICT (id) DO UPDATE SET {}", set.join(", ")));
        execute(connection, upsert).await?;
    }
    Ok(())
}

/// Run a statement built for this input once, without keeping it prepared.
pub async fn execute<D: Dialect>(connection: &mut Conn<D>, statement: Statement<D>) -> StoreResult<u64>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
{
    let Statement { sql, arguments } = statement;
    let result = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments)
        .persistent(false)
        .execute(&mut *connection)
        .await
        .map_err(store_error)?;
    Ok(D::rows_affected(&result))
}
