//! ferry's HTTP server, one port for everything (`--http-address`):
//!
//! - `GET /metrics`: the Prometheus registry as OpenMetrics text.
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 once the Application cache is synced (body: `ok: leader` or
//!   `ok: standby, ...` with leader election), else 503 with the reason.
//! - `POST /hooks/github|gitlab|generic`: push webhooks, which stamp `ferry.dev/reconcile-at` on
//!   every Application that follows the pushed repository and ref (as `ferry sync` does).
//!
//! Bad requests get a 4xx with a reason, bodies are limited to [`MAX_BODY_BYTES`]. Payload
//! parsing, signatures and matching are pure functions in [`webhook`]. Slow clients are bounded
//! in [`conn`]: header and body read timeouts, and a connection limit that sheds slow clients
//! before it refuses a probe.

pub mod conn;
mod readiness;
mod secret;
pub mod webhook;

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::reflector::Store,
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tracing::{info, warn};

pub use readiness::Readiness;
pub use secret::{BadSecretName, NoKey, WebhookSecret};
use webhook::{Hook, Provider, Push};

use crate::{
    api::{Application, RECONCILE_AT_ANNOTATION},
    metrics::{self, Metrics},
};

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Field manager of the annotation a webhook writes.
const FIELD_MANAGER: &str = "ferry-webhook";
/// Applications annotated at once for one push.
const TRIGGER_PARALLELISM: usize = 8;

/// What the handlers share.
#[derive(Clone)]
pub struct ServerState {
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    /// `None` without `--webhook-secret`: webhooks are off (404).
    pub webhooks: Option<Arc<Webhooks>>,
}

/// What the webhook receiver needs.
pub struct Webhooks {
    pub secret: WebhookSecret,
    /// The controller's Application cache: matching costs no API call.
    pub apps: Store<Application>,
    /// For the annotation patches.
    pub client: Client,
    /// Bound on each patch.
    pub api_timeout: Duration,
}

/// The routes, for [`serve`] (and tests).
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/hooks/github", post(github))
        .route("/hooks/gitlab", post(gitlab))
        .route("/hooks/generic", post(generic))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: ferry serves /metrics, /healthz, /readyz and /hooks/{github,gitlab,generic}\n",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` completes, then finishes the requests in progress.
pub async fn serve(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    conn::serve(listener, router(state), conn::Limits::for_this_process(), shutdown).await
}

/// A server running in its own task.
pub struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub fn spawn(listener: TcpListener, state: ServerState) -> Server {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Server { stop, task }
    }

    /// Stops accepting connections and waits up to `grace` for the requests in progress.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(());
        match tokio::time::timeout(grace, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "the HTTP server failed"),
            Ok(Err(e)) => warn!(error = %e, "the HTTP server task failed"),
            Err(_) => warn!("HTTP requests still running after {}s; stopping anyway", grace.as_secs()),
        }
    }
}

async fn metrics_text(State(state): State<ServerState>) -> Response {
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], state.metrics.encode()).into_response()
}

async fn readyz(State(state): State<ServerState>) -> Response {
    match state.readiness.check() {
        Ok(()) => {
            let role = state.readiness.role();
            let body = if role.is_empty() { "ok\n".to_string() } else { format!("ok: {role}\n") };
            (StatusCode::OK, body).into_response()
        }
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn github(State(s): State<ServerState>, h: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    hook(&s, Provider::GitHub, &h, body).await
}

async fn gitlab(State(s): State<ServerState>, h: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    hook(&s, Provider::GitLab, &h, body).await
}

async fn generic(
    State(s): State<ServerState>,
    h: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    hook(&s, Provider::Generic, &h, body).await
}

/// One webhook request, counted in `ferry_webhook_requests_total{provider,result}`.
async fn hook(
    state: &ServerState,
    provider: Provider,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (result, response) = handle(state, provider, headers, body).await;
    state.metrics.webhook(provider.as_str(), result);
    response
}

async fn handle(
    state: &ServerState,
    provider: Provider,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (&'static str, Response) {
    match accept(state, provider, headers, body) {
        Ok((hooks, push)) => trigger_all(hooks, provider, &push).await,
        Err(early) => early.answer(),
    }
}

/// A webhook request answered before any Application is triggered: refused or ignored.
struct Early {
    /// The `result` label of `ferry_webhooks_total`.
    result: &'static str,
    status: StatusCode,
    body: Value,
}

impl Early {
    fn refuse(result: &'static str, status: StatusCode, why: String) -> Early {
        Early { result, status, body: json!({"error": why}) }
    }

    fn ignore(status: StatusCode, why: &str) -> Early {
        Early { result: "ignored", status, body: json!({"triggered": [], "reason": why}) }
    }

    fn answer(self) -> (&'static str, Response) {
        (self.result, reply(self.status, self.body))
    }
}

/// The push a webhook request announces, checked in turn: webhooks are on, the body could be
/// read, the request is authenticated (first: an unauthenticated request learns nothing about
/// the payload rules), the payload is a push, and ferry is ready.
fn accept<'a>(
    state: &'a ServerState,
    provider: Provider,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(&'a Arc<Webhooks>, Push), Early> {
    let Some(hooks) = &state.webhooks else {
        let why = "webhooks are off: start ferry with --webhook-secret".into();
        return Err(Early::refuse("not_configured", StatusCode::NOT_FOUND, why));
    };
    let body = read_body(provider, body)?;
    authenticate(hooks, provider, headers, &body)?;
    let push = parse_push(provider, headers, &body)?;
    if let Err(why) = state.readiness.check() {
        let why = format!("ferry is not ready ({why}); deliver again later");
        return Err(Early::refuse("unavailable", StatusCode::SERVICE_UNAVAILABLE, why));
    }
    Ok((hooks, push))
}

fn read_body(provider: Provider, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Early> {
    match body {
        Ok(body) => Ok(body),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let why = format!("the body is larger than {MAX_BODY_BYTES} bytes");
            info!(provider = provider.as_str(), reason = %why, "webhook refused");
            Err(Early::refuse("too_large", StatusCode::PAYLOAD_TOO_LARGE, why))
        }
        Err(e) => {
            Err(Early::refuse("bad_request", StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")))
        }
    }
}

/// The provider's signature (GitHub, generic) or token (GitLab), against the webhook Secret.
fn authenticate(hooks: &Webhooks, provider: Provider, headers: &HeaderMap, body: &[u8]) -> Result<(), Early> {
    let p = provider.as_str();
    let key = match hooks.secret.key(provider) {
        Ok(key) => key,
        Err(why) => {
            warn!(provider = p, reason = %why, "webhook refused: no secret to check it against");
            let why = format!("ferry has no webhook secret for {p}; its log says why");
            return Err(Early::refuse("unauthorized", StatusCode::UNAUTHORIZED, why));
        }
    };
    let given = headers.get(provider.auth_header()).map(|v| v.as_bytes());
    let checked = match provider {
        Provider::GitLab => webhook::verify_token(provider.auth_header(), &key, given),
        Provider::GitHub | Provider::Generic => {
            webhook::verify_signature(provider.auth_header(), &key, body, given)
        }
    };
    checked.map_err(|e| {
        warn!(provider = p, reason = %e, "webhook refused");
        Early::refuse("unauthorized", StatusCode::UNAUTHORIZED, e.to_string())
    })
}

/// The push the payload announces; anything else is refused (not a push ferry understands) or
/// ignored (a ping, a deletion, another event).
fn parse_push(provider: Provider, headers: &HeaderMap, body: &[u8]) -> Result<Push, Early> {
    let p = provider.as_str();
    let event = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let parsed = match provider {
        Provider::GitHub => webhook::parse_github(event(webhook::GITHUB_EVENT), body),
        Provider::GitLab => webhook::parse_gitlab(event(webhook::GITLAB_EVENT), body),
        Provider::Generic => webhook::parse_generic(body),
    };
    match parsed {
        Err(why) => {
            info!(provider = p, reason = %why, "webhook refused");
            Err(Early::refuse("bad_request", StatusCode::BAD_REQUEST, why.to_string()))
        }
        Ok(Hook::Ignored(why)) => {
            info!(provider = p, reason = %why, "webhook ignored");
            Err(Early::ignore(StatusCode::OK, &why))
        }
        Ok(Hook::Push(push)) => Ok(push),
    }
}

/// Triggers every Application that follows the pushed repository and ref, a few at a time.
async fn trigger_all(hooks: &Arc<Webhooks>, provider: Provider, push: &Push) -> (&'static str, Response) {
    let p = provider.as_str();
    let keys = webhook::push_keys(push);
    let repo = push.repo_for_log();
    let git_ref = push.git_ref.to_string();
    let apps: Vec<Arc<Application>> =
        hooks.apps.state().into_iter().filter(|app| webhook::concerns(app, &keys, &push.git_ref)).collect();
    if apps.is_empty() {
        info!(provider = p, repo = %repo, git_ref = %git_ref, "push accepted; no Application follows this repository and ref");
        return Early::ignore(StatusCode::ACCEPTED, "no Application follows this repository and ref")
            .answer();
    }
    let results: Vec<Result<String, TriggerError>> =
        futures::stream::iter(apps.into_iter().map(|app| trigger(Arc::clone(hooks), app)))
            .buffer_unordered(TRIGGER_PARALLELISM)
            .collect()
            .await;
    let (mut triggered, mut failed): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for result in results {
        match result {
            Ok(app) => triggered.push(app),
            Err(why) => failed.push(why.to_string()),
        }
    }
    triggered.sort();
    failed.sort();
    info!(provider = p, repo = %repo, git_ref = %git_ref, triggered = %triggered.join(","), "push accepted");
    if !failed.is_empty() {
        warn!(provider = p, repo = %repo, git_ref = %git_ref, failed = %failed.join("; "), "cannot trigger some Applications");
        let body = json!({"triggered": triggered, "failed": failed});
        return ("accepted", reply(StatusCode::INTERNAL_SERVER_ERROR, body));
    }
    ("accepted", reply(StatusCode::ACCEPTED, json!({"triggered": triggered})))
}

/// Why an Application could not be stamped (`app`: `namespace/name`).
#[derive(Debug, thiserror::Error)]
enum TriggerError {
    #[error("{app}: {source}")]
    Api { app: String, source: kube::Error },
    #[error("{app}: the API server did not answer within {}s", after.as_secs())]
    Timeout { app: String, after: Duration },
}

/// Stamps `ferry.dev/reconcile-at` with the current time: the controller re-resolves the ref and
/// reconciles at once. Returns `namespace/name`.
async fn trigger(hooks: Arc<Webhooks>, app: Arc<Application>) -> Result<String, TriggerError> {
    let (namespace, name) = (app.namespace().unwrap_or_default(), app.name_any());
    let id = format!("{namespace}/{name}");
    let api: Api<Application> = Api::namespaced(hooks.client.clone(), &namespace);
    let patch = json!({"metadata": {"annotations": {RECONCILE_AT_ANNOTATION: Timestamp::now().to_string()}}});
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    match tokio::time::timeout(hooks.api_timeout, api.patch(&name, &params, &Patch::Merge(&patch))).await {
        Ok(Ok(_)) => Ok(id),
        Ok(Err(source)) => Err(TriggerError::Api { app: id, source }),
        Err(_) => Err(TriggerError::Timeout { app: id, after: hooks.api_timeout }),
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response()
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    use super::*;

    fn state(webhooks: Option<Arc<Webhooks>>) -> ServerState {
        ServerState { metrics: Arc::new(Metrics::new()), readiness: Readiness::new("syncing"), webhooks }
    }

    async fn call(router: Router, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, String) {
        let request = Request::builder().method(method).uri(uri).body(Body::from(body)).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn health_readiness_metrics_and_unknown_paths() {
        let s = state(None);
        assert_eq!(call(router(s.clone()), "GET", "/healthz", vec![]).await, (StatusCode::OK, "ok\n".into()));
        let (status, body) = call(router(s.clone()), "GET", "/readyz", vec![]).await;
        assert_eq!((status, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "not ready: syncing\n"));
        s.readiness.set_ready();
        assert_eq!(call(router(s.clone()), "GET", "/readyz", vec![]).await.0, StatusCode::OK);
        s.metrics.webhook("github", "accepted");
        let (status, body) = call(router(s.clone()), "GET", "/metrics", vec![]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("ferry_webhook_requests_total"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(call(router(s.clone()), "GET", "/nope", vec![]).await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            call(router(s.clone()), "GET", "/hooks/github", vec![]).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn webhooks_are_off_without_a_secret() {
        let s = state(None);
        for provider in ["github", "gitlab", "generic"] {
            let (status, body) =
                call(router(s.clone()), "POST", &format!("/hooks/{provider}"), b"{}".to_vec()).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(body.contains("--webhook-secret"), "{body}");
        }
        let text = s.metrics.encode();
        assert!(
            text.contains(r#"ferry_webhook_requests_total{provider="gitlab",result="not_configured"} 1"#),
            "{text}"
        );
    }
}
