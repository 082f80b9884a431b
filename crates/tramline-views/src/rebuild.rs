//! Rebuilding a declared view from its sources while the live table keeps serving.
//!
//! 1. A shadow table `<table>__rebuild` is created empty (a leftover of an interrupted
//!    rebuild is dropped first).
//! 2. The view's topics are replayed from their beginning, under a consumer group of the
//!    rebuild's own, into the shadow table, up to where every partition ended when the
//!    rebuild started.
//! 3. The tables are swapped in one step (`RENAME TABLE` on MariaDB, both renames in one
//!    transaction elsewhere): a reader sees the old table or the new one, never an empty or
//!    partial one. The old table is dropped.
//! 4. The replay goes on, into the now live table, up to where every partition ends after the
//!    swap. Whatever a live consumer applied to the old table between the end of step 2 and
//!    the swap is in those records; whatever it applies after the swap goes into the new
//!    table. Applying a record twice changes nothing (every column is a register guarded by
//!    its version), so the live consumers simply carry on from their own offsets.
//!
//! Records are deduplicated by message id, as the live consumers do, under the rebuild's own
//! consumer name (its dedupe records are forgotten at the end; the inbox schema must be in
//! the view's database). Records the declaration does not map are skipped; a record that
//! cannot be applied (the live consumer would have parked it) is skipped and counted.

use std::collections::BTreeMap;
use std::time::Duration;
use tramline_core::offsets::CommitPosition;
use tramline_core::ports::{Subscription, Transport};
use tramline_core::retry::{RetryCounters, RetryPolicy};
use tramline_core::Record;
use tramline_sql::readmodel::KeyedChange;
use tramline_sql::{Db, Dialect, Inbox, ReadModelError, ReadModelTable, SqlError};

const STORE: &str = "view rebuild";
/// Records per poll and per transaction.
const BATCH: usize = 1000;

/// Why a rebuild stopped. The live table is untouched unless the swap happened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RebuildError {
    /// The transport failed.
    #[error("the transport failed while replaying")]
    Transport(#[source] tramline_core::Error),
    /// The database failed.
    #[error("the database failed")]
    Sql(#[source] SqlError),
    /// Applying a batch failed for good (after the retries of a transient failure).
    #[error("applying a batch failed")]
    Apply(#[source] tramline_core::Error),
    /// The shadow table's declaration is not valid (the table name is too long, …).
    #[error("the shadow table cannot be declared: {0}")]
    Shadow(String),
}

impl From<SqlError> for RebuildError {
    fn from(e: SqlError) -> Self {
        RebuildError::Sql(e)
    }
}

impl From<tramline_core::Error> for RebuildError {
    fn from(e: tramline_core::Error) -> Self {
        RebuildError::Transport(e)
    }
}

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Replaying into the shadow table.
    Replay,
    /// The tables were swapped; replaying what arrived meanwhile into the live table.
    CatchUp,
    /// Done.
    Done,
}

/// Progress, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Records read so far.
    pub read: u64,
    /// Records to read in this phase's target (where the partitions ended).
    pub total: u64,
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Records read.
    pub read: u64,
    /// Records applied (the rest were not the view's, or skipped).
    pub applied: u64,
    /// Records that could not be applied (as the live consumer would have parked them).
    pub skipped: u64,
    /// Rows in the table when the tables were swapped.
    pub rows_at_swap: u64,
}

/// Rebuilds `table` (in `db`) from `topics` on `transport`, reading as consumer group
/// `group` (a group of the rebuild's own: it starts from the beginning), calling `progress`
/// after every batch.
pub async fn rebuild<T: Transport>(
    transport: &T,
    db: &Db,
    table: &ReadModelTable,
    group: &str,
    topics: &[String],
    mut progress: impl FnMut(Progress),
) -> Result<Report, RebuildError> {
    let live = table.declaration().table.clone();
    let mut declaration = table.declaration().clone();
    declaration.table = format!("{live}__rebuild");
    let shadow = ReadModelTable::new(declaration).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        RebuildError::Shadow(lines.join("; "))
    })?;
    execute(db, &format!("DROP TABLE IF EXISTS {live}__rebuild")).await?;
    shadow.create(db).await?;

    let mut report = Report::default();
    let mut replay = Replay {
        subscription: transport.subscribe(group, topics).await?,
        positions: BTreeMap::new(),
        inbox: Inbox::new(group),
        retries: RetryCounters::for_component(STORE),
    };
    let ends = transport.end_offsets(topics).await?;
    replay
        .until(
            &ends,
            db,
            &shadow,
            Phase::Replay,
            &mut report,
            &mut progress,
        )
        .await?;
    report.rows_at_swap = shadow.rows(db).await?.len() as u64;
    swap(db, &live).await?;
    let ends = transport.end_offsets(topics).await?;
    replay
        .until(&ends, db, table, Phase::CatchUp, &mut report, &mut progress)
        .await?;
    replay.subscription.close().await;
    replay.inbox.forget(db).await?;
    progress(Progress {
        phase: Phase::Done,
        read: report.read,
        total: report.read,
    });
    Ok(report)
}

/// The rebuild's reader: its subscription and how far each partition has been read.
struct Replay<S> {
    subscription: S,
    positions: BTreeMap<(String, i32), i64>,
    /// The rebuild's own dedupe records, forgotten at the end.
    inbox: Inbox,
    /// Its retries of a busy or lost database, by cause.
    retries: RetryCounters,
}

impl<S: Subscription> Replay<S> {
    /// Reads and applies into `target` until every partition is read up to `ends`.
    async fn until(
        &mut self,
        ends: &[CommitPosition],
        db: &Db,
        target: &ReadModelTable,
        phase: Phase,
        report: &mut Report,
        progress: &mut impl FnMut(Progress),
    ) -> Result<(), RebuildError> {
        let total: u64 = ends.iter().map(|e| e.next_offset.max(0) as u64).sum();
        let behind = |positions: &BTreeMap<(String, i32), i64>| {
            ends.iter().any(|e| {
                positions
                    .get(&(e.topic.clone(), e.partition))
                    .copied()
                    .unwrap_or(0)
                    < e.next_offset
            })
        };
        while behind(&self.positions) {
            let batch = self
                .subscription
                .poll(BATCH, Duration::from_millis(200))
                .await?;
            if batch.is_empty() {
                continue;
            }
            for r in &batch {
                let at = self
                    .positions
                    .entry((r.envelope.topic.clone(), r.partition))
                    .or_insert(0);
                *at = (*at).max(r.offset + 1);
            }
            report.read += batch.len() as u64;
            apply(db, &self.inbox, &self.retries, target, &batch, report).await?;
            let read: u64 = self.positions.values().map(|p| *p as u64).sum();
            progress(Progress {
                phase,
                read: read.min(total),
                total,
            });
        }
        Ok(())
    }
}

/// Applies the batch's records in one transaction with a dedupe record per message id (a
/// relay or CDC that publishes a message again after a crash gives the copy a later position,
/// so only its id tells it is a copy); when the batch is refused (a value of the wrong type,
/// another origin), record by record, skipping the refused ones. A busy or lost database is
/// retried.
async fn apply(
    db: &Db,
    inbox: &Inbox,
    retries: &RetryCounters,
    table: &ReadModelTable,
    batch: &[Record],
    report: &mut Report,
) -> Result<(), RebuildError> {
    let decoded: Vec<Option<KeyedChange>> = batch
        .iter()
        .map(|record| {
            table.declaration().decode(record).unwrap_or_else(|e| {
                tracing::warn!(topic = %record.envelope.topic, partition = record.partition, offset = record.offset, error = %tramline_core::error::sentence(&e), "skipped a record the view cannot apply");
                report.skipped += 1;
                None
            })
        })
        .collect();
    let write = |records, decoded| write(db, inbox, table, records, decoded, retries);
    match write(batch, &decoded).await.map_err(RebuildError::Apply)? {
        Ok(applied) => report.applied += applied,
        Err(_) => {
            for (record, change) in batch.iter().zip(&decoded) {
                let one = std::slice::from_ref(record);
                match write(one, std::slice::from_ref(change))
                    .await
                    .map_err(RebuildError::Apply)?
                {
                    Ok(applied) => report.applied += applied,
                    Err(e) => {
                        tracing::warn!(topic = %record.envelope.topic, partition = record.partition, offset = record.offset, error = %tramline_core::error::sentence(&e), "skipped a record the view cannot apply");
                        report.skipped += 1;
                    }
                }
            }
        }
    }
    Ok(())
}

/// One transaction claiming `records`' ids and applying the changes of the new ones, with
/// the one retry policy for a busy or lost database: how many changes it applied, or the
/// view's refusal of the batch (rolled back).
async fn write(
    db: &Db,
    inbox: &Inbox,
    table: &ReadModelTable,
    records: &[Record],
    decoded: &[Option<KeyedChange>],
    retries: &RetryCounters,
) -> Result<Result<u64, ReadModelError>, tramline_core::Error> {
    RetryPolicy::default()
        .run(retries, || async {
            let mut tx = db.begin(STORE).await?;
            let new = inbox.claim(&mut tx, records).await?;
            let fresh: Vec<KeyedChange> = decoded
                .iter()
                .zip(&new)
                .filter(|(_, new)| **new)
                .filter_map(|(change, _)| change.clone())
                .collect();
            match table.apply(&mut tx, &fresh).await {
                Err(ReadModelError::Sql(e)) => return Err(e.into()),
                Err(refused) => return Ok(Err(refused)),
                Ok(()) => {}
            }
            tx.commit(STORE).await?;
            Ok(Ok(fresh.len() as u64))
        })
        .await
}

async fn execute(db: &Db, sql: &str) -> Result<(), SqlError> {
    db.execute(&db.stmt(sql), STORE, "rebuild")
        .await
        .map(|_| ())
}

/// Puts `<live>__rebuild` in the place of `<live>` in one step, then drops the old table.
async fn swap(db: &Db, live: &str) -> Result<(), SqlError> {
    let old = format!("{live}__old");
    let shadow = format!("{live}__rebuild");
    execute(db, &format!("DROP TABLE IF EXISTS {old}")).await?;
    match db.dialect() {
        Dialect::MySql => {
            execute(
                db,
                &format!("RENAME TABLE {live} TO {old}, {shadow} TO {live}"),
            )
            .await?
        }
        _ => {
            let mut tx = db.begin(STORE).await?;
            for sql in [
                format!("ALTER TABLE {live} RENAME TO {old}"),
                format!("ALTER TABLE {shadow} RENAME TO {live}"),
            ] {
                let stmt = tx.stmt(&sql);
                tx.execute(&stmt, STORE, "swap tables").await?;
            }
            tx.commit(STORE).await?;
        }
    }
    execute(db, &format!("DROP TABLE {old}")).await?;
    if db.dialect() == Dialect::Postgres {
        // The primary key's index keeps the name it was created with; give it the live
        // table's, so that the next rebuild's shadow table can take its own.
        execute(
            db,
            &format!("ALTER INDEX IF EXISTS {shadow}_pkey RENAME TO {live}_pkey"),
        )
        .await?;
    }
    Ok(())
}
