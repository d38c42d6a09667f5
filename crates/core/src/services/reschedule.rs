use super::App;
use super::ServiceError;
use crate::domain::notification::{Notification, Status};
use crate::domain::{NotificationId, SendAt};
use crate::jobs::FanoutJob;
use crate::ports::error_chain;

impl App {
    /// Moves a scheduled notification; a time not in the future sends it now.
    #[tracing::instrument(name = "reschedule", skip_all, fields(%id))]
    pub async fn reschedule(
        &self,
        id: &NotificationId,
        send_at: SendAt,
    ) -> Result<Notification, ServiceError> {
        let mut n = self
            .store
            .get_notification(id)
            .await?
            .ok_or(ServiceError::NotFound("notification"))?;
        let conflict = |status: Status| {
            ServiceError::Conflict(format!(
                "only a scheduled notification can be rescheduled (status {})",
                status.as_str()
            ))
        };
        if n.status != Status::Scheduled {
            return Err(conflict(n.status));
        }
        let now = self.clock.now();
        let at = send_at.timestamp(now);
        let at = at.round(jiff::Unit::Millisecond).unwrap_or(at);
        if !self.store.set_send_at(id, at).await? {
            return Err(conflict(
                self.store
                    .get_notification(id)
                    .await?
                    .map(|n| n.status)
                    .unwrap_or(n.status),
            ));
        }
        n.send_at = at;
        match send_at {
            // A fire of the old schedule before this update lands is stale: fanout sees the later
            // `send_at` and ignores it.
            SendAt::At(_) => self.scheduler.schedule(id, at).await?,
            SendAt::Now => {
                if !self
                    .store
                    .transition(id, &[Status::Scheduled], Status::Queued)
                    .await?
                {
                    return Err(conflict(
                        self.store
                            .get_notification(id)
                            .await?
                            .map(|n| n.status)
                            .unwrap_or(n.status),
                    ));
                }
                self.queues
                    .send_fanout(&FanoutJob::start(id.clone()))
                    .await?;
                if let Err(e) = self.scheduler.cancel(id).await {
                    tracing::warn!(%id, error = %error_chain(&e), "could not delete the old schedule");
                }
                n.status = Status::Queued;
            }
        }
        Ok(n)
    }
}
