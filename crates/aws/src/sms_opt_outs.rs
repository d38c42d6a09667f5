//! SMS opt-outs: a recipient who answers STOP is on SNS's list of opted-out numbers, and SNS
//! drops what is sent to them. The feedback function copies that list onto the suppression
//! list (reason `sms_opt_out`) when the stack's schedule asks, so that a send to such a number
//! is `skipped` with the reason instead of reported `sent`. A number that opts back in on SNS
//! stays suppressed here until `DELETE /v1/suppressions/{number}`: opting in again is the
//! user's word, which only the backend can pass on.

use jiff::Timestamp;

use notify_core::domain::PhoneNumber;
use notify_core::domain::suppression::{SuppressedAddress, Suppression, SuppressionReason};
use notify_core::ports::{BoxError, StoreError, SuppressionStore};

use crate::lazy_client::LazyClient;

pub struct SmsOptOuts {
    client: LazyClient<aws_sdk_sns::Client>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("SNS ListPhoneNumbersOptedOut failed")]
    Sns(#[source] BoxError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SmsOptOuts {
    pub fn new(client: impl Into<LazyClient<aws_sdk_sns::Client>>) -> Self {
        Self {
            client: client.into(),
        }
    }

    /// Suppresses every opted-out number not suppressed yet, a page of SNS's list (up to 100
    /// numbers) at a time; returns how many it added. A number already on the list keeps its
    /// reason and time.
    pub async fn sync(
        &self,
        store: &dyn SuppressionStore,
        now: Timestamp,
    ) -> Result<usize, SyncError> {
        let mut added = 0;
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .get()
                .list_phone_numbers_opted_out()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| SyncError::Sns(e.into()))?;
            let numbers: Vec<SuppressedAddress> = page
                .phone_numbers()
                .iter()
                .filter_map(|raw| match PhoneNumber::parse(raw) {
                    Ok(number) => Some(SuppressedAddress::Phone(number)),
                    Err(_) => {
                        tracing::warn!("SNS lists an opted-out number that does not parse");
                        None
                    }
                })
                .collect();
            let known = store.find_suppressions(&numbers).await?;
            for address in numbers {
                if known.iter().any(|s| s.address == address) {
                    continue;
                }
                store
                    .put_suppression(&Suppression {
                        address,
                        reason: SuppressionReason::SmsOptOut,
                        created_at: now,
                    })
                    .await?;
                added += 1;
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => return Ok(added),
            }
        }
    }
}
