//! SMS by SNS `Publish` to an E.164 number, as a transactional message.

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

use notify_core::ports::{OutgoingSms, SendError, SmsSender};

use crate::lazy_client::LazyClient;
use crate::provider_error::classify;

pub struct SnsSms {
    client: LazyClient<Client>,
}

impl SnsSms {
    pub fn new(client: impl Into<LazyClient<Client>>) -> Self {
        Self {
            client: client.into(),
        }
    }
}

#[async_trait]
impl SmsSender for SnsSms {
    async fn send(&self, sms: &OutgoingSms) -> Result<String, SendError> {
        let transactional = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("Transactional")
            .build()
            .map_err(|e| SendError::permanent(e.to_string()))?;
        let out = self
            .client
            .get()
            .publish()
            .phone_number(sms.to.as_str())
            .message(&sms.body)
            .message_attributes("AWS.SNS.SMS.SMSType", transactional)
            .send()
            .await
            .map_err(|e| classify("SNS", &e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }
}
