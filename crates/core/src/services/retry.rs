//! Retry, the API side: `POST /v1/notifications/{id}/retry` moves a notification that finished
//! with failures back to `sending` and puts a fanout job with `retry_failed` on the queue (the
//! fanout side is `fanout/retry.rs`). The move is conditional, so two retry requests start one
//! retry; it also clears the "fanned out" mark, so that a reopened delivery sent at once cannot
//! finish the notification while later pages still hold failed deliveries to reopen.

use super::App;
use super::ServiceError;
use crate::domain::NotificationId;
use crate::domain::notification::{Notification, Status};
use crate::jobs::FanoutJob;
use crate::ports::error_chain;
impl App {
    /// `POST /v1/notifications/{id}/retry`.
    #[tracing::instrument(name = "retry", skip_all, fields(%id))]
    pub async fn retry(&self, id: &NotificationId) -> Result<Notification, ServiceError> {
        let mut n = self
            .store
            .get_notification(id)
            .await?
            .ok_or(ServiceError::NotFound("notification"))?;
        let finished_with_failures = [Status::Failed, Status::PartiallyFailed];
        if !finished_with_failures.contains(&n.status) {
            return Err(ServiceError::Conflict(format!(
                "only a notification that finished with failed deliveries can be retried (status {})",
                n.status.as_str()
            )));
        }
        if !self.store.begin_retry(id).await? {
            return Err(ServiceError::Conflict(
                "a retry of this notification is already under way".into(),
            ));
        }
        let job = FanoutJob {
            retry_failed: true,
            ..FanoutJob::start(id.clone())
        };
        if let Err(e) = self.queues.send_fanout(&job).await {
            // Nothing was reopened: put the status back so that the caller can ask again.
            let undo = match self
                .store
                .transition(id, &[Status::Sending], n.status)
                .await
            {
                Ok(_) => self.store.mark_fanned_out(id, None).await,
                Err(e) => Err(e),
            };
            if let Err(undo) = undo {
                tracing::error!(%id, error = %error_chain(&undo), "a retry could not be queued nor undone");
            }
            return Err(e.into());
        }
        n.status = Status::Sending;
        Ok(n)
    }
}
