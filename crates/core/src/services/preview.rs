//! A delivery's message, shown without sending it (the console): rendered as dispatch renders
//! it, from the notification, its template and its recipient as they are now. Nothing is
//! kept of what was sent, so a template changed since then shows its new text.

use std::sync::Arc;

use super::ServiceError;
use super::render::{self, RenderInput, Rendered, Source};
use super::unsubscribe::UnsubscribeLinks;
use crate::domain::delivery::{DeliveryKey, Recipient};
use crate::domain::notification::Target;
use crate::domain::{Channel, EmailAddress, NotificationId, UserId};
use crate::ports::{Clock, Store};

pub struct Preview {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    unsubscribe: Arc<UnsubscribeLinks>,
    from: EmailAddress,
}

impl Preview {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        unsubscribe: Arc<UnsubscribeLinks>,
        from: EmailAddress,
    ) -> Self {
        Self {
            store,
            clock,
            unsubscribe,
            from,
        }
    }

    /// The message of the delivery of notification `id` to `recipient` (a delivery's
    /// `recipient`: a user id, `email:…` or `phone:…`) on `channel`. `Ok(Err(why))`: it cannot
    /// be rendered, and a send would fail for that reason.
    #[tracing::instrument(name = "preview", skip_all, fields(%id, %channel))]
    pub async fn message(
        &self,
        id: &NotificationId,
        recipient: &str,
        channel: Channel,
    ) -> Result<Result<Rendered, String>, ServiceError> {
        let store = self.store.as_ref();
        let Some(n) = store.get_notification(id).await? else {
            return Err(ServiceError::NotFound("notification"));
        };
        if !n.channels.contains(&channel) {
            return Err(ServiceError::NotFound("delivery"));
        }
        let recipient = match (&n.to, recipient) {
            (Target::Email(to), key) if Recipient::email(to.clone()).key == key => {
                Recipient::email(to.clone())
            }
            (Target::Phone(to), key) if Recipient::phone(to.clone()).key == key => {
                Recipient::phone(to.clone())
            }
            (Target::UserId(to), key) if to.as_str() == key => self.user(to).await?,
            // A group's member: the user as they are now (they may have left the group since).
            (Target::GroupId(_), key) => match UserId::parse(key) {
                Ok(user) => self.user(&user).await?,
                Err(_) => return Err(ServiceError::NotFound("delivery")),
            },
            _ => return Err(ServiceError::NotFound("delivery")),
        };
        let source = Source::load(store, &n).await?;
        let category = render::optional_category(store, &n).await?;
        let unsubscribe = self
            .unsubscribe
            .for_delivery(channel, category.as_ref(), &recipient)
            .await?;
        let input = RenderInput {
            notification: &n,
            source: &source,
            from: &self.from,
            unsubscribe: unsubscribe.as_deref(),
            now: self.clock.now(),
        };
        let key = DeliveryKey {
            notification_id: n.id.clone(),
            recipient: recipient.key.clone(),
            channel,
        };
        Ok(input.render(&recipient, &key).map_err(|e| e.message))
    }

    async fn user(&self, id: &UserId) -> Result<Recipient, ServiceError> {
        match self.store.get_user(id).await? {
            Some(user) => Ok(Recipient::from_user(&user)),
            None => Err(ServiceError::NotFound("user")),
        }
    }
}
