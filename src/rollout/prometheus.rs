//! A Prometheus instant-query client: `GET <address>/api/v1/query?query=…`, read as one number.
//!
//! Built on the hyper client already in the tree through kube (http and https, system roots),
//! with a deadline on every request so a silent Prometheus costs one timeout, never a stuck
//! rollout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use super::analysis::{AnswerError, read_answer};

/// The largest answer read: an instant query for one number is tiny.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Clone)]
pub struct Prometheus {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Prometheus {
    pub fn new(timeout: Duration) -> std::io::Result<Prometheus> {
        let connector =
            HttpsConnectorBuilder::new().with_native_roots()?.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Prometheus { client, timeout })
    }

    /// Evaluates `promql` at now on the Prometheus at `address`: `Ok(None)` for no data,
    /// `Err` with a message a person can act on.
    pub async fn query(&self, address: &str, promql: &str) -> Result<Option<f64>, QueryError> {
        let base = address.trim_end_matches('/');
        let encoded: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let uri: http::Uri = format!("{base}/api/v1/query?query={encoded}")
            .parse()
            .map_err(|source| QueryError::NotAUrl { address: address.to_string(), source })?;
        let request = http::Request::get(uri).body(Empty::new()).map_err(QueryError::Request)?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|source| QueryError::Unreachable { base: base.to_string(), source })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|source| QueryError::Reading { base: base.to_string(), source })?
                .to_bytes();
            Ok::<_, QueryError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| QueryError::Timeout { base: base.to_string(), timeout: self.timeout })??;
        // Prometheus answers bad queries with 400 and a JSON error, which read_answer words.
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|source| QueryError::NotJson { base: base.to_string(), status, source })?;
        Ok(read_answer(&json)?)
    }
}

/// Why a query got no number. The text is what a measurement's status shows, so it names the
/// address asked; the cause, where there is one, is kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("Prometheus address {address:?} is not a URL: {source}")]
    NotAUrl { address: String, source: http::uri::InvalidUri },
    #[error("{0}")]
    Request(#[source] http::Error),
    #[error("querying {base}: {source}")]
    Unreachable { base: String, source: hyper_util::client::legacy::Error },
    #[error("reading the answer of {base}: {source}")]
    Reading { base: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{base} did not answer within {}s", .timeout.as_secs())]
    Timeout { base: String, timeout: Duration },
    /// The body is not JSON (a proxy's error page, another service): the parse error is kept as
    /// the source but not shown, as it says nothing about where the address went wrong.
    #[error("{base} answered {status} with something that is not Prometheus JSON")]
    NotJson { base: String, status: http::StatusCode, source: serde_json::Error },
    /// Prometheus answered, but not with one number.
    #[error(transparent)]
    Answer(#[from] AnswerError),
}
