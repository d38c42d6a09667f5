use super::App;
use super::ServiceError;
use crate::domain::NotificationId;
use crate::domain::notification::{Notification, Status};
use crate::ports::error_chain;

impl App {
    /// Cancels a scheduled notification. Cancelling twice is fine; once it started, it is a 409.
    #[tracing::instrument(name = "cancel", skip_all, fields(%id))]
    pub async fn cancel(&self, id: &NotificationId) -> Result<Notification, ServiceError> {
        let mut n = self
            .store
            .get_notification(id)
            .await?
            .ok_or(ServiceError::NotFound("notification"))?;
        if n.status == Status::Cancelled {
            return Ok(n);
        }
        if n.status != Status::Scheduled
            || !self
                .store
                .transition(id, &[Status::Scheduled], Status::Cancelled)
                .await?
        {
            let now = self
                .store
                .get_notification(id)
                .await?
                .map(|n| n.status)
                .unwrap_or(n.status);
            return Err(ServiceError::Conflict(format!(
                "the notification has already started (status {})",
                now.as_str()
            )));
        }
        // The status is what counts: a schedule that fires anyway finds `cancelled` and sends nothing.
        if let Err(e) = self.scheduler.cancel(id).await {
            tracing::warn!(%id, error = %error_chain(&e), "could not delete the schedule of a cancelled notification");
        }
        n.status = Status::Cancelled;
        Ok(n)
    }
}
