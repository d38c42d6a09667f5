//! Fanout: turns one fired notification into delivery rows and dispatch jobs, page by page.
//!
//! Idempotent: a job that runs twice inserts no new rows (rows are keyed by notification,
//! recipient and channel) and at worst repeats dispatch jobs, whose claims stop a second send.

use std::sync::Arc;

use crate::delivery::{Delivery, Recipient};
use crate::domain::Channel;
use crate::error::Error;
use crate::jobs::{DispatchItem, DispatchJob, FanoutJob};
use crate::notification::{Notification, Status, Target};
use crate::ports::{Clock, Queues, Store};
use crate::user::ChannelPrefs;

pub struct Fanout {
    pub store: Arc<dyn Store>,
    pub queues: Arc<dyn Queues>,
    pub clock: Arc<dyn Clock>,
    pub settings: FanoutSettings,
}

#[derive(Debug, Clone, Copy)]
pub struct FanoutSettings {
    /// Recipients carried by one dispatch job (one queue message).
    pub recipients_per_job: usize,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        Self {
            recipients_per_job: 50,
        }
    }
}

/// What one fanout step did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanoutReport {
    pub deliveries: usize,
    pub dispatch_jobs: usize,
    pub continued: bool,
    /// Why nothing was done (cancelled, already finished, fired early, unknown id).
    pub ignored: Option<&'static str>,
}

/// A recipient as found at fire time, or the reason it cannot be reached at all.
enum Resolved {
    Found(Recipient, ChannelPrefs),
    Gone(Recipient, &'static str),
}

impl Fanout {
    pub async fn handle(&self, job: &FanoutJob) -> Result<FanoutReport, Error> {
        let id = &job.notification_id;
        let Some(n) = self.store.get_notification(id).await? else {
            return Ok(ignored("unknown notification"));
        };
        match n.status {
            Status::Cancelled => return Ok(ignored("cancelled")),
            Status::Completed | Status::PartiallyFailed | Status::Failed => {
                return Ok(ignored("already finished"));
            }
            Status::Scheduled if n.fired_early(self.clock.now()) => {
                return Ok(ignored("fired before send_at"));
            }
            Status::Scheduled | Status::Queued => {
                if !self
                    .store
                    .transition(id, &[Status::Scheduled, Status::Queued], Status::Sending)
                    .await?
                {
                    // Lost a race: proceed only if the winner was another fanout, not a cancel.
                    let now = self.store.get_notification(id).await?.map(|n| n.status);
                    if now != Some(Status::Sending) {
                        return Ok(ignored("cancelled"));
                    }
                }
            }
            Status::Sending => {}
        }

        let (page, next_cursor) = self.resolve(&n, job.cursor.as_deref()).await?;
        let mut deliveries = Vec::new();
        let mut items = Vec::new();
        for resolved in page {
            let (recipient, channels) = plan(&n, resolved, &mut deliveries);
            if !channels.is_empty() {
                items.push(DispatchItem {
                    recipient,
                    channels,
                });
            }
        }
        self.store.insert_deliveries(&deliveries).await?;
        let jobs: Vec<DispatchJob> = items
            .chunks(self.settings.recipients_per_job.max(1))
            .map(|chunk| DispatchJob {
                notification_id: id.clone(),
                items: chunk.to_vec(),
            })
            .collect();
        if !jobs.is_empty() {
            self.queues.send_dispatch(&jobs).await?;
        }

        let mut report = FanoutReport {
            deliveries: deliveries.len(),
            dispatch_jobs: jobs.len(),
            ..Default::default()
        };
        match next_cursor {
            Some(cursor) => {
                self.queues
                    .send_fanout(&FanoutJob {
                        notification_id: id.clone(),
                        cursor: Some(cursor),
                    })
                    .await?;
                report.continued = true;
            }
            None => {
                self.store.mark_fanned_out(id).await?;
                // Everything may have been skipped, with no dispatch job left to finish it.
                self.store.finish_if_done(id).await?;
            }
        }
        Ok(report)
    }

    /// One page of recipients, resolved now (not when the request was accepted).
    async fn resolve(
        &self,
        n: &Notification,
        _cursor: Option<&str>,
    ) -> Result<(Vec<Resolved>, Option<String>), Error> {
        let one = match &n.to {
            Target::UserId(user_id) => match self.store.get_user(user_id).await? {
                Some(user) => Resolved::Found(Recipient::from_user(&user), user.channels),
                None => Resolved::Gone(
                    Recipient {
                        key: user_id.as_str().to_owned(),
                        user_id: Some(user_id.clone()),
                        email: None,
                        phone: None,
                        timezone: None,
                        locale: None,
                    },
                    "the user no longer exists",
                ),
            },
            Target::Email(address) => {
                Resolved::Found(Recipient::email(address.clone()), ChannelPrefs::default())
            }
            Target::Phone(number) => {
                Resolved::Found(Recipient::phone(number.clone()), ChannelPrefs::default())
            }
            Target::GroupId(_) => {
                return Err(Error::Unavailable(
                    "group sends are not supported by this store".into(),
                ));
            }
        };
        Ok((vec![one], None))
    }
}

/// Decides, per channel, whether the recipient gets a pending delivery or a skipped one.
fn plan(
    n: &Notification,
    resolved: Resolved,
    deliveries: &mut Vec<Delivery>,
) -> (Recipient, Vec<Channel>) {
    let mut channels = Vec::new();
    let recipient = match resolved {
        Resolved::Gone(recipient, why) => {
            for &channel in &n.channels {
                deliveries.push(Delivery::skipped(&n.id, &recipient, channel, why));
            }
            recipient
        }
        Resolved::Found(recipient, prefs) => {
            for &channel in &n.channels {
                let skip = if !prefs.allows(channel) {
                    Some("the recipient opted out of this channel")
                } else if recipient.address(channel).is_none() {
                    Some(match channel {
                        Channel::Email => "the recipient has no email address",
                        Channel::Sms => "the recipient has no phone number",
                    })
                } else {
                    None
                };
                match skip {
                    Some(why) => {
                        deliveries.push(Delivery::skipped(&n.id, &recipient, channel, why))
                    }
                    None => {
                        deliveries.push(Delivery::pending(&n.id, &recipient, channel));
                        channels.push(channel);
                    }
                }
            }
            recipient
        }
    };
    (recipient, channels)
}

fn ignored(why: &'static str) -> FanoutReport {
    tracing::info!(reason = why, "fanout ignored");
    FanoutReport {
        ignored: Some(why),
        ..Default::default()
    }
}
