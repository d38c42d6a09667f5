//! `WebhookPoster` over HTTP(S), the same on both runtimes.

use std::time::Duration;

use async_trait::async_trait;

use crate::ports::{WebhookPoster, error_chain};

pub struct HttpPoster {
    client: reqwest::Client,
}

impl HttpPoster {
    /// Fails only if no TLS backend can be set up.
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // An endpoint that hangs must not hold a consumer for long; it gets the event
            // again on the next attempt.
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            // A redirect is an answer other than 2xx: followed, it could lead anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("notify-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }
}

#[async_trait]
impl WebhookPoster for HttpPoster {
    async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<(), String> {
        let mut request = self.client.post(url).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered {status}"))
        }
    }
}
