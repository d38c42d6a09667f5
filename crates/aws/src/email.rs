//! Email by SES v2 `SendEmail` with Raw content: the same MIME bytes the local runtime sends.

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, MessageTag, RawMessage};

use notify_core::ports::{EmailSender, OutgoingEmail, SendError};

use crate::delivery_tags;
use crate::lazy_client::LazyClient;
use crate::provider_error::classify;

pub struct SesEmail {
    client: LazyClient<Client>,
    configuration_set: Option<String>,
}

impl SesEmail {
    pub fn new(client: impl Into<LazyClient<Client>>, configuration_set: Option<String>) -> Self {
        Self {
            client: client.into(),
            configuration_set,
        }
    }
}

#[async_trait]
impl EmailSender for SesEmail {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, SendError> {
        let raw = RawMessage::builder()
            .data(Blob::new(email.raw.clone()))
            .build()
            .map_err(|e| SendError::permanent(e.to_string()))?;
        let tags = delivery_tags::tags(&email.delivery)
            .into_iter()
            .map(|(name, value)| MessageTag::builder().name(name).value(value).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SendError::permanent(e.to_string()))?;
        let out = self
            .client
            .get()
            .send_email()
            .from_email_address(email.from.as_str())
            .destination(
                Destination::builder()
                    .to_addresses(email.to.as_str())
                    .build(),
            )
            .content(EmailContent::builder().raw(raw).build())
            .set_email_tags(Some(tags))
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|e| classify("SES", &e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }
}
