//! A circuit breaker per remote cluster, as a tower layer on every client of that cluster.
//!
//! Each request's outcome feeds it: an HTTP answer of any status means the API server is there;
//! a transport error (refused, reset, timed out, TLS) counts as a failure. After
//! [`OPEN_AFTER`] failures in a row the circuit opens, and from then on every request fails at
//! once, without touching the network: the Applications of a cluster that went away fail fast
//! (`ClusterUnreachable`) instead of each waiting out connect timeouts and holding the workers
//! that other clusters' Applications need. A probe (see `controller::clusters`) closes it again
//! when the API server answers.

use std::{
    sync::Mutex,
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use futures::{FutureExt, future::BoxFuture};

use crate::locks::locked;

/// Transport failures in a row that open the circuit.
pub const OPEN_AFTER: u32 = 3;

/// A request its caller gave up on (a timeout dropped it) after waiting this long without an
/// answer counts as a failure: a cluster that accepts connections and then says nothing (a
/// hung API server, a black-holed route) never produces a transport error of its own.
pub const SILENT_AFTER: Duration = Duration::from_secs(5);

/// What the breaker knows of its cluster.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Transport failures since the last answer.
    failures: u32,
    /// Set while the circuit is open: when it opened.
    open_since: Option<Instant>,
    /// The last transport error, for messages (never holds credentials: it is a connection
    /// error's text).
    last_error: Option<String>,
    /// When the API server last answered.
    last_answer: Option<Instant>,
}

/// The circuit is open: the request was not sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not sent: the cluster has not answered since {last_error}")]
pub struct CircuitOpen {
    pub last_error: String,
}

impl Breaker {
    /// The API server answered.
    pub fn answered(&self) {
        let mut s = locked(&self.state);
        s.failures = 0;
        s.open_since = None;
        s.last_error = None;
        s.last_answer = Some(Instant::now());
    }

    /// A request failed below HTTP (`error`: its words).
    pub fn failed(&self, error: String) {
        let mut s = locked(&self.state);
        s.failures = s.failures.saturating_add(1);
        s.last_error = Some(error);
        if s.failures >= OPEN_AFTER && s.open_since.is_none() {
            s.open_since = Some(Instant::now());
        }
    }

    /// Whether requests are refused without being sent.
    pub fn is_open(&self) -> bool {
        locked(&self.state).open_since.is_some()
    }

    /// Whether the last request to the cluster failed below HTTP (the circuit may not be open
    /// yet): a pass that failed then failed because of the cluster.
    pub fn is_failing(&self) -> bool {
        locked(&self.state).failures > 0
    }

    /// The last transport error, while the cluster is failing.
    pub fn last_error(&self) -> Option<String> {
        let s = locked(&self.state);
        if s.failures > 0 { s.last_error.clone() } else { None }
    }

    /// When the API server last answered.
    pub fn last_answer(&self) -> Option<Instant> {
        locked(&self.state).last_answer
    }

    fn refusal(&self) -> Option<CircuitOpen> {
        let s = locked(&self.state);
        s.open_since?;
        Some(CircuitOpen { last_error: s.last_error.clone().unwrap_or_else(|| "an error".into()) })
    }
}

/// The tower layer: wraps a client's service with `breaker`.
#[derive(Clone)]
pub struct BreakerLayer {
    pub breaker: std::sync::Arc<Breaker>,
}

impl<S> tower::Layer<S> for BreakerLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded { inner, breaker: self.breaker.clone() }
    }
}

#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    breaker: std::sync::Arc<Breaker>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Guarded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: From<CircuitOpen> + std::fmt::Display + Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(open) = self.breaker.refusal() {
            return futures::future::ready(Err(S::Error::from(open))).boxed();
        }
        let mut waiting = Waiting { breaker: Some(self.breaker.clone()), since: Instant::now() };
        let answer = self.inner.call(req);
        async move {
            let answer = answer.await;
            if let Some(breaker) = waiting.breaker.take() {
                match &answer {
                    Ok(_) => breaker.answered(),
                    Err(e) => breaker.failed(e.to_string()),
                }
            }
            answer
        }
        .boxed()
    }
}

/// A request on its way: dropped before its answer after [`SILENT_AFTER`], it counts as a
/// failure.
struct Waiting {
    breaker: Option<std::sync::Arc<Breaker>>,
    since: Instant,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take()
            && self.since.elapsed() >= SILENT_AFTER
        {
            breaker.failed(format!("no answer within {}s", self.since.elapsed().as_secs()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_an_answer_closes_it() {
        let breaker = Breaker::default();
        breaker.failed("connection refused".into());
        breaker.answered();
        for _ in 0..OPEN_AFTER - 1 {
            breaker.failed("connection refused".into());
        }
        assert!(breaker.is_failing() && !breaker.is_open(), "an answer in between restarts the count");
        breaker.failed("connection refused".into());
        assert!(breaker.is_open());
        assert_eq!(breaker.refusal().unwrap().last_error, "connection refused");
        breaker.answered();
        assert!(!breaker.is_open() && !breaker.is_failing() && breaker.last_answer().is_some());
        assert_eq!(breaker.last_error(), None);
    }

    #[tokio::test]
    async fn an_open_circuit_sends_nothing() {
        use tower::{Layer, Service, ServiceExt};
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = sent.clone();
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err::<http::Response<()>, tower::BoxError>("connection refused".into()) }
        });
        let breaker = std::sync::Arc::new(Breaker::default());
        let mut service = BreakerLayer { breaker: breaker.clone() }.layer(inner);
        for _ in 0..OPEN_AFTER + 2 {
            let err = service.ready().await.unwrap().call(http::Request::new(())).await.unwrap_err();
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), OPEN_AFTER);
        assert!(breaker.is_open());
    }
}
