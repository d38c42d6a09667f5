//! `WebhookPoster` over HTTP(S), the same on both runtimes.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::webhook::{ip_literal, is_internal};
use crate::ports::{WebhookPoster, error_chain};

pub struct HttpPoster {
    client: reqwest::Client,
    allow_internal: bool,
}

/// Resolves names as the system does and keeps only the addresses a webhook may reach: a name
/// that resolved to a public address when the endpoint was made may resolve to an internal
/// one now (DNS rebinding).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_internal(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A client for URLs that others chose (webhook endpoints, push endpoints). Fails only if no
/// TLS backend can be set up. Unless `allow_internal`, it connects only to public addresses.
pub(crate) fn outbound_client(
    allow_internal: bool,
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder();
    if !allow_internal {
        builder = builder.dns_resolver(std::sync::Arc::new(PublicOnly));
    }
    builder
        // HTTP(S)_PROXY would send the request through a proxy that resolves the name
        // itself, past the resolver's check.
        .no_proxy()
        // An endpoint that hangs must not hold a consumer for long; it gets the message
        // again on the next attempt.
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        // A redirect is an answer other than 2xx: followed, it could lead anywhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("notify/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl HttpPoster {
    /// Fails only if no TLS backend can be set up. Unless `allow_internal`, it connects only
    /// to public addresses.
    pub fn new(allow_internal: bool) -> Result<Self, reqwest::Error> {
        let client = outbound_client(allow_internal, Duration::from_secs(15))?;
        Ok(Self {
            client,
            allow_internal,
        })
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
        // An address written in the URL is not resolved: checked here.
        if !self.allow_internal
            && url::Url::parse(url)
                .ok()
                .and_then(|parsed| ip_literal(&parsed))
                .is_some_and(is_internal)
        {
            return Err("the endpoint is an internal address".into());
        }
        let mut request = self.client.post(url).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        // Without the URL: its query may hold the endpoint's secret, and this reason is logged
        // and stored with the attempt.
        let response = request
            .send()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered {status}"))
        }
    }
}
