//! Sending a payload: one POST with a deadline, on the hyper client already in the tree; which
//! failures are worth a retry; the back-off between retries. Errors never hold the address (a
//! Slack or Teams URL carries its token) nor the token.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use super::payload::Payload;

/// How long a retry waits at most.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a message is retried before it is given up on.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
/// The most of an answer read (only to finish the exchange).
const MAX_ANSWER: usize = 64 << 10;

/// 1s, 2s, 4s ... capped at [`MAX_BACKOFF`], after the `failures`-th failure (from 1).
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the address is not a valid http(s) URL")]
    BadAddress,
    #[error("could not connect or send ({0})")]
    Connect(String),
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("the receiver answered {0}")]
    Status(u16),
}

impl SendError {
    /// Connection errors, timeouts, 5xx and 429 may pass later; other 4xx and a bad address
    /// will not.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::BadAddress => false,
            SendError::Connect(_) | SendError::Timeout(_) => true,
            SendError::Status(code) => *code == 429 || *code >= 500,
        }
    }
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Http {
    pub fn new(timeout: Duration) -> std::io::Result<Http> {
        let connector =
            HttpsConnectorBuilder::new().with_native_roots()?.https_or_http().enable_http1().build();
        Ok(Http { client: Client::builder(TokioExecutor::new()).build(connector), timeout })
    }

    /// POSTs `payload` to `address`; a 2xx is delivered.
    pub async fn post(&self, address: &str, payload: &Payload) -> Result<(), SendError> {
        let uri: http::Uri = address.parse().map_err(|_| SendError::BadAddress)?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(SendError::BadAddress);
        }
        let mut request = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("ferry/", env!("CARGO_PKG_VERSION")));
        for (name, value) in &payload.headers {
            request = request.header(*name, value);
        }
        let request =
            request.body(Full::new(Bytes::from(payload.body.clone()))).map_err(|_| SendError::BadAddress)?;
        let exchange = async {
            // The client's error names no URL; its kind (connect, closed) is what is kept.
            let response = self.client.request(request).await.map_err(|e| SendError::Connect(kind(&e)))?;
            let status = response.status();
            let _ = Limited::new(response.into_body(), MAX_ANSWER).collect().await;
            Ok::<_, SendError>(status)
        };
        let status = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout(self.timeout))??;
        if status.is_success() { Ok(()) } else { Err(SendError::Status(status.as_u16())) }
    }
}

/// What went wrong, in words that cannot carry the address.
fn kind(e: &hyper_util::client::legacy::Error) -> String {
    if e.is_connect() { "connection failed".into() } else { "request failed".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let schedule: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(schedule, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        // Ten minutes of retries is at least twenty attempts once the back-off is capped.
        let mut waited = Duration::ZERO;
        let mut tries = 0;
        while waited < GIVE_UP_AFTER {
            tries += 1;
            waited += backoff(tries);
        }
        assert!(tries >= 20, "{tries}");
    }

    #[test]
    fn only_connection_errors_timeouts_5xx_and_429_are_retried() {
        assert!(SendError::Connect("x".into()).is_transient());
        assert!(SendError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(SendError::Status(503).is_transient());
        assert!(SendError::Status(429).is_transient());
        assert!(!SendError::Status(404).is_transient());
        assert!(!SendError::Status(401).is_transient());
        assert!(!SendError::BadAddress.is_transient());
    }
}
