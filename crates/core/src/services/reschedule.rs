use super::App;
use super::ServiceError;
use crate::domain::notification::{Notification, Status};
use crate::domain::{NotificationId, SendAt};
use crate::jobs::FanoutJob;
use crate::ports::error_chain;

/// Moves a scheduled notification; a time not in the future sends it now.
pub async fn reschedule(
    app: &App,
    id: &NotificationId,
    send_at: SendAt,
) -> Result<Notification, ServiceError> {
    let mut n = app
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
    let now = app.clock.now();
    let at = send_at.timestamp(now);
    let at = at.round(jiff::Unit::Millisecond).unwrap_or(at);
    if !app.store.set_send_at(id, at).await? {
        return Err(conflict(
            app.store
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
        SendAt::At(_) => app.scheduler.schedule(id, at).await?,
        SendAt::Now => {
            if !app
                .store
                .transition(id, &[Status::Scheduled], Status::Queued)
                .await?
            {
                return Err(conflict(
                    app.store
                        .get_notification(id)
                        .await?
                        .map(|n| n.status)
                        .unwrap_or(n.status),
                ));
            }
            app.queues
                .send_fanout(&FanoutJob::start(id.clone()))
                .await?;
            if let Err(e) = app.scheduler.cancel(id).await {
                tracing::warn!(%id, error = %error_chain(&e), "could not delete the old schedule");
            }
            n.status = Status::Queued;
        }
    }
    Ok(n)
}
