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

use super::analysis::read_answer;

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
    pub async fn query(&self, address: &str, promql: &str) -> Result<Option<f64>, String> {
        let base = address.trim_end_matches('/');
        let encoded: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let uri: http::Uri = format!("{base}/api/v1/query?query={encoded}")
            .parse()
            .map_err(|e| format!("Prometheus address {address:?} is not a URL: {e}"))?;
        let request = http::Request::get(uri).body(Empty::new()).map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| format!("querying {base}: {e}"))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer of {base}: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("{base} did not answer within {}s", self.timeout.as_secs()))??;
        // Prometheus answers bad queries with 400 and a JSON error, which read_answer words.
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| format!("{base} answered {status} with something that is not Prometheus JSON"))?;
        read_answer(&json).map_err(|e| e.to_string())
    }
}
