//! The scheduler on one machine: a `schedules` table and a timer that sleeps until the next
//! due row. Firing moves the row to the fanout queue in one transaction, so a crash fires it
//! either never (and the restart fires it at once) or exactly once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::params;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use notify_core::domain::NotificationId;
use notify_core::jobs::FanoutJob;
use notify_core::ports::{DependencyError, Scheduler, SchedulerError, StoreError};

use crate::db::{Cached, Db, db_err, json_err, millis};
use crate::queue::{QueueName, SqliteQueues, insert_jobs};
use notify_core::ports::error_chain;

#[derive(Clone)]
pub struct SqliteScheduler {
    db: Db,
    changed: Arc<Notify>,
}

impl SqliteScheduler {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            changed: Arc::new(Notify::new()),
        }
    }

    /// The same schedules over another connection, waking the same timer.
    pub fn on(&self, db: Db) -> Self {
        Self {
            db,
            changed: self.changed.clone(),
        }
    }

    /// Fires every schedule due at `now`; returns how many fired.
    pub async fn fire_due(&self, now: Timestamp) -> Result<usize, StoreError> {
        let now = millis(now);
        self.db
            .call(move |c| {
                let tx = c.savepoint().map_err(db_err)?;
                let ids: Vec<String> = {
                    let mut stmt = tx
                        .prepare_cached("SELECT notification_id FROM schedules WHERE due_at <= ?1")
                        .map_err(db_err)?;
                    let rows = stmt.query_map(params![now], |r| r.get(0)).map_err(db_err)?;
                    rows.collect::<Result<_, _>>().map_err(db_err)?
                };
                let mut payloads = Vec::with_capacity(ids.len());
                for id in &ids {
                    let notification_id =
                        NotificationId::parse(id).map_err(|e| StoreError::Corrupt(e.0))?;
                    payloads.push(
                        serde_json::to_string(&FanoutJob::start(notification_id))
                            .map_err(json_err)?,
                    );
                }
                insert_jobs(&tx, QueueName::Fanout, &payloads, now)?;
                tx.cached_execute("DELETE FROM schedules WHERE due_at <= ?1", params![now])
                    .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(ids.len())
            })
            .await
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.db
            .call(|c| {
                c.cached_row("SELECT min(due_at) FROM schedules", [], |r| r.get(0))
                    .map_err(db_err)
            })
            .await
    }

    /// Sleeps until the next due schedule (or a change), fires it, and repeats until shut down.
    pub async fn run(self, queues: SqliteQueues, shutdown: CancellationToken) {
        loop {
            // Register interest before reading, so a schedule added meanwhile is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait = match self.next_due().await {
                Ok(None) => Duration::from_secs(3600),
                Ok(Some(due)) => {
                    let now = millis(Timestamp::now());
                    if due <= now {
                        match self.fire_due(Timestamp::now()).await {
                            Ok(n) if n > 0 => {
                                tracing::info!(fired = n, "schedules fired");
                                queues.ready(QueueName::Fanout).notify_waiters();
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::error!(error = %error_chain(&e), "firing schedules failed")
                            }
                        }
                        continue;
                    }
                    Duration::from_millis((due - now) as u64)
                }
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "reading schedules failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut changed => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn sched_err(e: StoreError) -> SchedulerError {
    DependencyError::scheduler("sqlite schedules", e)
}

#[async_trait]
impl Scheduler for SqliteScheduler {
    async fn schedule(&self, id: &NotificationId, at: Timestamp) -> Result<(), SchedulerError> {
        let (id, at) = (id.as_str().to_owned(), millis(at));
        self.db
            .call(move |c| {
                c.cached_execute(
                    "INSERT INTO schedules (notification_id, due_at) VALUES (?1, ?2) ON CONFLICT(notification_id) DO UPDATE SET due_at = excluded.due_at",
                    params![id, at],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
            .map_err(sched_err)?;
        self.changed.notify_waiters();
        Ok(())
    }

    async fn cancel(&self, id: &NotificationId) -> Result<(), SchedulerError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                c.cached_execute(
                    "DELETE FROM schedules WHERE notification_id = ?1",
                    params![id],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
            .map_err(sched_err)?;
        self.changed.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_due_schedules_once_into_the_fanout_queue() {
        let db = Db::open_in_memory().unwrap();
        let s = SqliteScheduler::new(db.clone());
        let q = SqliteQueues::new(db);
        let t: Timestamp = "2026-11-21T00:00:00Z".parse().unwrap();
        let a = NotificationId::generate(t);
        let b = NotificationId::generate(t);
        s.schedule(&a, t + jiff::SignedDuration::from_secs(10))
            .await
            .unwrap();
        s.schedule(&b, t + jiff::SignedDuration::from_secs(20))
            .await
            .unwrap();
        s.schedule(&a, t + jiff::SignedDuration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(
            s.fire_due(t + jiff::SignedDuration::from_secs(10))
                .await
                .unwrap(),
            0,
            "a was moved to +30s"
        );
        assert_eq!(
            s.fire_due(t + jiff::SignedDuration::from_secs(25))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.fire_due(t + jiff::SignedDuration::from_secs(25))
                .await
                .unwrap(),
            0,
            "fired once"
        );
        s.cancel(&a).await.unwrap();
        assert_eq!(
            s.fire_due(t + jiff::SignedDuration::from_secs(99))
                .await
                .unwrap(),
            0,
            "cancelled"
        );
        let jobs = q
            .receive(QueueName::Fanout, 10, Duration::from_secs(5), 5)
            .await
            .unwrap();
        let job: FanoutJob = serde_json::from_str(&jobs[0].payload).unwrap();
        assert_eq!((jobs.len(), job.notification_id), (1, b));
    }
}
