//! The stack's first API key, from the secret `template.yaml` generates: read when a request
//! first needs it (then kept by `ApiKeys`), so that the api function's init makes no AWS call.

use async_trait::async_trait;

use notify_core::ports::{BoxError, FirstKey};

pub struct SecretFirstKey {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
}

impl SecretFirstKey {
    pub fn new(client: aws_sdk_secretsmanager::Client, arn: String) -> Self {
        Self { client, arn }
    }
}

#[async_trait]
impl FirstKey for SecretFirstKey {
    async fn secret(&self) -> Result<String, BoxError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.arn)
            .send()
            .await?;
        out.secret_string()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("the API key secret {} is empty", self.arn).into())
    }
}
