//! The SDK clients' HTTPS: one hyper 1.x client on rustls (aws-lc), trusting AWS's roots
//! compiled in, whose TLS set-up is made once, at the first request.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;

/// The root certificates AWS service endpoints chain to: Amazon Trust Services' Root CA 1 to 4,
/// and the Starfield root that cross-signs them.
pub const AWS_ROOTS: &[u8] = include_bytes!("../certs/aws-roots.pem");

/// HTTPS that trusts `AWS_ROOTS`, compiled in. The default trusts the platform's store, which
/// it reads and parses at every cold start (about 150 certificates, 5 of 7 ms of a function's
/// init here) for nothing an AWS endpoint needs. `NOTIFY_TLS_ROOTS=native` brings the
/// platform's store back, for a TLS-inspecting proxy or an endpoint with a private CA.
pub fn https_client(native_roots: bool) -> SharedHttpClient {
    use aws_smithy_http_client::tls::{
        Provider, TlsContext, TrustStore, rustls_provider::CryptoMode,
    };
    let trust = if native_roots {
        TrustStore::default()
    } else {
        TrustStore::empty().with_pem_certificate(AWS_ROOTS)
    };
    let tls = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .unwrap_or_default();
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls)
        .build_https();
    SetUpAtFirstRequest(client).into_shared()
}

/// The hyper client, less its check at each SDK client's construction. That check builds a
/// TLS connector and drops it, so that a platform store would be read at init rather than at
/// the first request; with the roots compiled in, it only parsed them and built a rustls
/// configuration again for every SDK client a function makes (a third of a millisecond of the
/// api function's init for its four clients), then once more at the first request, where the
/// connector that is kept is built.
#[derive(Debug)]
struct SetUpAtFirstRequest(SharedHttpClient);

impl HttpClient for SetUpAtFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}
