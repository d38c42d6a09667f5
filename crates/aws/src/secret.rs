//! Values the stack keeps in Secrets Manager (the first API key, the key that signs
//! unsubscribe links, the FCM service account), read when first needed, so that no function's
//! init makes an AWS call.

use async_trait::async_trait;

use notify_core::ports::{BoxError, FirstKey, SigningKey};

use crate::lazy_client::LazyClient;

/// A secret's value, read at its first use and then kept for the life of the execution
/// environment: one read however many services ask (the signing key serves both unsubscribe
/// links and user tokens); a failed read is tried again at the next use.
pub struct SecretValue {
    client: LazyClient<aws_sdk_secretsmanager::Client>,
    arn: String,
    value: tokio::sync::OnceCell<String>,
}

impl SecretValue {
    pub fn new(client: impl Into<LazyClient<aws_sdk_secretsmanager::Client>>, arn: String) -> Self {
        Self {
            client: client.into(),
            arn,
            value: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn read(&self) -> Result<String, BoxError> {
        self.value.get_or_try_init(|| self.fetch()).await.cloned()
    }

    async fn fetch(&self) -> Result<String, BoxError> {
        let out = self
            .client
            .get()
            .get_secret_value()
            .secret_id(&self.arn)
            .send()
            .await?;
        out.secret_string()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("the secret {} is empty", self.arn).into())
    }
}

#[async_trait]
impl FirstKey for SecretValue {
    async fn secret(&self) -> Result<String, BoxError> {
        self.read().await
    }
}

#[async_trait]
impl SigningKey for SecretValue {
    async fn key(&self) -> Result<Vec<u8>, BoxError> {
        self.read().await.map(String::into_bytes)
    }
}
