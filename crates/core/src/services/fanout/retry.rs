//! Retry, the fanout side: sends the failed deliveries of a finished notification again, and
//! nothing else. The job goes through the recorded deliveries a page at a time (with the same
//! time budget and continuations as a group), reopens each failed one (failed → pending,
//! attempts from zero) and queues dispatch jobs for them. Sent and skipped deliveries are never
//! reopened, so a retry cannot repeat a send.

use std::collections::HashMap;

use tokio::time::Instant;

use super::{Fanout, FanoutReport, ignored};
use crate::domain::delivery::{Delivery, DeliveryStatus, Recipient};
use crate::domain::notification::Status;
use crate::domain::user::User;
use crate::domain::{Channel, EmailAddress, PhoneNumber, UserId};
use crate::jobs::{DispatchItem, FanoutJob};
use crate::services::ServiceError;

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
