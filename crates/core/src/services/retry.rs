//! Retry: sends the failed deliveries of a finished notification again, and nothing else.
//!
//! The API moves the notification from `failed` or `partially_failed` back to `sending` and puts
//! a fanout job with `retry_failed` on the queue. The fanout goes through the recorded
//! deliveries a page at a time (with the same time budget and continuations as a group), reopens
//! each failed one (failed → pending, attempts from zero) and queues dispatch jobs for them.
//! Sent and skipped deliveries are never reopened, so a retry cannot repeat a send; the move to
//! `sending` is conditional, so two retry requests start one retry. That move also clears the
//! "fanned out" mark, so that a reopened delivery sent at once cannot finish the notification
//! while later pages still hold failed deliveries to reopen.

use std::collections::HashMap;

use tokio::time::Instant;

use super::App;
use super::ServiceError;
use super::fanout::{Fanout, FanoutReport, ignored};
use crate::domain::delivery::{Delivery, DeliveryStatus, Recipient};
use crate::domain::notification::{Notification, Status};
use crate::domain::user::User;
use crate::domain::{Channel, EmailAddress, NotificationId, PhoneNumber, UserId};
use crate::jobs::{DispatchItem, FanoutJob};
use crate::ports::error_chain;

/// `POST /v1/notifications/{id}/retry`.
pub async fn request(app: &App, id: &NotificationId) -> Result<Notification, ServiceError> {
    let mut n = app
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
    if !app.store.begin_retry(id).await? {
        return Err(ServiceError::Conflict(
            "a retry of this notification is already under way".into(),
        ));
    }
    let job = FanoutJob {
        retry_failed: true,
        ..FanoutJob::start(id.clone())
    };
    if let Err(e) = app.queues.send_fanout(&job).await {
        // Nothing was reopened: put the status back so that the caller can ask again.
        let undo = match app.store.transition(id, &[Status::Sending], n.status).await {
            Ok(_) => app.store.mark_fanned_out(id).await,
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

impl Fanout {
    /// The fanout side of a retry: reopen the failed deliveries, a page at a time.
    pub(super) async fn retry_failed(&self, job: &FanoutJob) -> Result<FanoutReport, ServiceError> {
        let started = Instant::now();
        let id = &job.notification_id;
        match self.store.get_notification(id).await? {
            None => return Ok(ignored("unknown notification")),
            Some(n) if n.status != Status::Sending => return Ok(ignored("not being retried")),
            Some(_) => {}
        }
        let mut report = FanoutReport::default();
        let mut cursor = job.cursor.clone();
        loop {
            let page = self
                .store
                .list_deliveries(id, self.settings.page_size, cursor.as_deref())
                .await?;
            let mut reopened = Vec::new();
            for d in page
                .items
                .into_iter()
                .filter(|d| d.status == DeliveryStatus::Failed)
            {
                if self.store.reopen_failed(&d.key).await? {
                    reopened.push(d);
                }
            }
            let items = self.recipients_again(reopened).await?;
            let jobs = self.pack(id, items);
            if !jobs.is_empty() {
                self.queues.send_dispatch(&jobs).await?;
            }
            report.pages += 1;
            report.dispatch_jobs += jobs.len();
            match self
                .after_page(job, page.next_cursor, started, &mut report)
                .await?
            {
                Some(next) => cursor = Some(next),
                None => return Ok(report),
            }
        }
    }

    /// Dispatch items for reopened deliveries: a user's current profile when the user still
    /// exists (an address fixed since is used), else the address the delivery recorded.
    async fn recipients_again(
        &self,
        reopened: Vec<Delivery>,
    ) -> Result<Vec<DispatchItem>, ServiceError> {
        let ids: Vec<UserId> = reopened.iter().filter_map(|d| d.user_id.clone()).collect();
        let users: HashMap<UserId, User> = self
            .store
            .get_users(&ids)
            .await?
            .into_iter()
            .map(|u| (u.id.clone(), u))
            .collect();
        let mut items: Vec<DispatchItem> = Vec::new();
        for d in reopened {
            // Rows come ordered by recipient, so a recipient's channels are next to each other.
            if let Some(last) = items
                .last_mut()
                .filter(|i| i.recipient.key == d.key.recipient)
            {
                last.channels.push(d.key.channel);
                add_address(&mut last.recipient, &d);
                continue;
            }
            let mut recipient = match d.user_id.as_ref().and_then(|u| users.get(u)) {
                Some(user) => Recipient::from_user(user),
                None => Recipient {
                    key: d.key.recipient.clone(),
                    user_id: d.user_id.clone(),
                    email: None,
                    phone: None,
                    timezone: None,
                    locale: None,
                },
            };
            add_address(&mut recipient, &d);
            items.push(DispatchItem {
                recipient,
                channels: vec![d.key.channel],
            });
        }
        Ok(items)
    }
}

/// Fills the channel's address from the delivery row when the profile has none.
fn add_address(recipient: &mut Recipient, d: &Delivery) {
    let Some(address) = d.address.as_deref() else {
        return;
    };
    match d.key.channel {
        Channel::Email if recipient.email.is_none() => {
            recipient.email = EmailAddress::parse(address).ok()
        }
        Channel::Sms if recipient.phone.is_none() => {
            recipient.phone = PhoneNumber::parse(address).ok()
        }
        _ => {}
    }
}
