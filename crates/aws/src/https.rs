//! The SDK clients' HTTPS: the reqwest client the functions already link for webhooks, Web Push
//! and FCM (HTTP/1.1 on rustls with aws-lc), trusting AWS's roots compiled in, and built once
//! per connector settings at its first request.
//!
//! Why not the SDK's own client: it is a second copy of the same hyper stack, and it compiles
//! HTTP/2 in unconditionally (the `h2` crate, about a tenth of the api function's code), which
//! no endpoint we call needs: DynamoDB, SQS, SES, SNS, Scheduler and Secrets Manager all speak
//! HTTP/1.1.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_runtime_api::shared::IntoShared;
use aws_smithy_types::body::SdkBody;

/// The root certificates AWS service endpoints chain to: Amazon Trust Services' Root CA 1 to 4,
/// and the Starfield root that cross-signs them.
pub const AWS_ROOTS: &[u8] = include_bytes!("../certs/aws-roots.pem");

/// HTTPS that trusts `AWS_ROOTS`, compiled in. The platform's store would be read and parsed
/// at every cold start (about 150 certificates) for nothing an AWS endpoint needs.
/// `NOTIFY_TLS_ROOTS=native` brings the platform's verifier back, for a TLS-inspecting proxy
/// or an endpoint with a private CA.
pub fn https_client(native_roots: bool) -> SharedHttpClient {
    ReqwestHttps {
        native_roots,
        clients: Arc::default(),
    }
    .into_shared()
}

/// One reqwest client per connector settings the SDK asks for (its timeouts), shared by every
/// SDK client of the function, and made at its first request: building one parses the roots and
/// makes a rustls configuration, which init need not pay for.
#[derive(Debug, Clone)]
struct ReqwestHttps {
    native_roots: bool,
    clients: Arc<Mutex<HashMap<Timeouts, Connector>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Timeouts {
    connect: Option<Duration>,
    read: Option<Duration>,
}

impl HttpClient for ReqwestHttps {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let timeouts = Timeouts {
            connect: settings.connect_timeout(),
            read: settings.read_timeout(),
        };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(timeouts)
            .or_insert_with(|| Connector {
                native_roots: self.native_roots,
                timeouts,
                client: Arc::default(),
            })
            .clone()
            .into_shared()
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("reqwest", None))
    }
}

#[derive(Debug, Clone)]
struct Connector {
    native_roots: bool,
    timeouts: Timeouts,
    client: Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
}

impl Connector {
    fn client(&self) -> Result<&reqwest::Client, ConnectorError> {
        self.client
            .get_or_init(|| self.build().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ConnectorError::user(format!("cannot set up HTTPS: {e}").into()))
    }

    fn build(&self) -> Result<reqwest::Client, reqwest::Error> {
        // As the SDK's own client: no redirects followed (an AWS endpoint answers, it does
        // not redirect, and the SDK handles the ones it expects itself), no HTTP/2.
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none());
        if !self.native_roots {
            builder = builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(AWS_ROOTS)?);
        }
        if let Some(t) = self.timeouts.connect {
            builder = builder.connect_timeout(t);
        }
        if let Some(t) = self.timeouts.read {
            builder = builder.read_timeout(t);
        }
        builder.build()
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match self.client() {
            Ok(client) => client.clone(),
            Err(e) => return HttpConnectorFuture::ready(Err(e)),
        };
        let request = match request
            .try_into_http1x()
            .map_err(|e| ConnectorError::user(e.into()))
            .and_then(|r| {
                reqwest::Request::try_from(r.map(reqwest::Body::wrap))
                    .map_err(|e| ConnectorError::user(e.into()))
            }) {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(e)),
        };
        HttpConnectorFuture::new(async move {
            let response = client.execute(request).await.map_err(connector_error)?;
            let response = http::Response::from(response).map(SdkBody::from_body_1_x);
            Response::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// How the SDK's retries see a failed call, as they see its own client's: a timeout is a
/// timeout, a connection that failed or broke before the answer is transient I/O (retried), a
/// request that could not be built is the caller's.
fn connector_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout()
        || has_source::<std::io::Error>(&e, |io| io.kind() == std::io::ErrorKind::TimedOut)
    {
        ConnectorError::timeout(e.into())
    } else if e.is_builder() {
        ConnectorError::user(e.into())
    } else if e.is_connect() || e.is_request() || has_source::<std::io::Error>(&e, |_| true) {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}

fn has_source<E: StdError + 'static>(e: &reqwest::Error, test: impl Fn(&E) -> bool) -> bool {
    let mut next: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(err) = next {
        if err.downcast_ref::<E>().is_some_and(&test) {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_smithy_runtime_api::client::result::SdkError;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An SQS client on `https_client` against a local endpoint, with three attempts.
    fn sqs(endpoint: String) -> aws_sdk_sqs::Client {
        let sdk = crate::wiring::sdk_config_with(
            "eu-west-1".into(),
            Credentials::new("AKID", "secret", None, None, "test"),
            Some(endpoint),
            https_client(false),
        );
        let config = aws_sdk_sqs::config::Builder::from(&sdk)
            .retry_config(
                aws_smithy_types::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .timeout_config(
                aws_smithy_types::timeout::TimeoutConfig::builder()
                    .read_timeout(Duration::from_millis(300))
                    .build(),
            )
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    }

    #[derive(Clone, Copy)]
    enum Answer {
        /// Closes the connection without a word.
        Close,
        /// Keeps the connection open and never answers.
        Silence,
        /// Answers with this status and JSON body.
        Json(u16, &'static str),
    }

    /// A plain-HTTP server that counts the requests it reads and answers each as `answer` says.
    async fn server(answer: Answer) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    if socket.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    match answer {
                        Answer::Close => {}
                        Answer::Silence => tokio::time::sleep(Duration::from_secs(30)).await,
                        Answer::Json(status, body) => {
                            let head = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            let _ = socket.write_all(head.as_bytes()).await;
                            let _ = socket.write_all(body.as_bytes()).await;
                        }
                    }
                });
            }
        });
        (url, calls)
    }

    #[test]
    fn the_compiled_in_aws_roots_make_a_client() {
        let connector = Connector {
            native_roots: false,
            timeouts: Timeouts {
                connect: Some(Duration::from_secs(1)),
                read: None,
            },
            client: Arc::default(),
        };
        assert!(connector.client().is_ok());
        assert_eq!(
            reqwest::Certificate::from_pem_bundle(AWS_ROOTS)
                .unwrap()
                .len(),
            5
        );
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_retried_as_transient() {
        let (url, calls) = server(Answer::Close).await;
        let e = sqs(url).list_queues().send().await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "every attempt made: {e:?}");
        assert!(
            matches!(&e, SdkError::DispatchFailure(f) if f.is_io()),
            "a transient I/O failure: {e:?}"
        );
    }

    #[tokio::test]
    async fn an_endpoint_that_does_not_answer_times_out_and_is_retried() {
        let (url, calls) = server(Answer::Silence).await;
        let e = sqs(url).list_queues().send().await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "every attempt made: {e:?}");
        assert!(
            matches!(&e, SdkError::DispatchFailure(f) if f.is_timeout()),
            "a timeout: {e:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_reaches_the_sdk_with_its_status_headers_and_body() {
        let (url, calls) = server(Answer::Json(
            200,
            r#"{"QueueUrls":["https://sqs.example/1/q"]}"#,
        ))
        .await;
        let out = sqs(url).list_queues().send().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(out.queue_urls(), ["https://sqs.example/1/q"]);
    }

    #[tokio::test]
    async fn a_server_error_is_an_answer_the_sdk_retries_not_a_connector_failure() {
        let (url, calls) = server(Answer::Json(
            500,
            r#"{"__type":"InternalError","message":"We encountered an error"}"#,
        ))
        .await;
        let e = sqs(url).list_queues().send().await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{e:?}");
        assert!(
            e.raw_response().is_some_and(|r| r.status().as_u16() == 500),
            "{e:?}"
        );
    }
}
