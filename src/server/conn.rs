//! The connections of the HTTP server: how many there may be, and how long a client may take to
//! say what it wants.
//!
//! `axum::serve` has no header timeout, no body timeout and no connection limit, so clients that
//! send their requests a byte at a time pile up until ferry runs out of file descriptors, and
//! then `/healthz` cannot even be accepted (the kubelet restarts a healthy ferry). Here:
//!
//! - hyper's header read timeout closes a connection that has not sent its request head in time;
//! - a request body has a deadline too (webhooks read theirs whole, up to `MAX_BODY_BYTES`);
//! - at most [`Limits::max_connections`] connections are open. When a new one comes and the
//!   table is full, the oldest connection that is not running a handler (idle, or still sending
//!   its head or body: what a slow client looks like) is shed to make room, so a probe always
//!   gets in while slow clients fill the table. Running out of descriptors anyway (a lower
//!   `ulimit -n` than the limit assumed) sheds one the same way before the next accept.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body};
use bytes::Bytes;
use hyper::{
    Request,
    body::{Body as HttpBody, Frame, Incoming, SizeHint},
    server::conn::http1,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, watch},
    time::Sleep,
};
use tower::ServiceExt;
use tracing::{debug, warn};

/// Bounds of the server's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more shed the oldest one not running a handler.
    pub max_connections: usize,
    /// Time a client has to send a request's head (request line and headers).
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's body, from the end of its head.
    pub body_read_timeout: Duration,
}

/// Most connections, whatever the descriptor limit: Prometheus, probes and Git servers' webhook
/// deliveries need a handful.
pub const MAX_CONNECTIONS: usize = 512;
/// Header and body timeouts: far longer than any real client needs on a cluster network.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Limits {
    /// The limits for this process: at most [`MAX_CONNECTIONS`], and at most a quarter of the
    /// open-file limit, so that Git, renderers and the API clients keep descriptors of their own.
    pub fn for_this_process() -> Limits {
        let by_files =
            open_files_limit().map_or(MAX_CONNECTIONS, |n| usize::try_from(n / 4).unwrap_or(usize::MAX));
        Limits {
            max_connections: by_files.clamp(16, MAX_CONNECTIONS),
            header_read_timeout: READ_TIMEOUT,
            body_read_timeout: READ_TIMEOUT,
        }
    }
}

fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes only to the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then_some(limit.rlim_cur)
}

/// What a connection is doing, to choose one to shed.
const WAITING: u8 = 0; // between requests, or receiving a request's head
const RECEIVING: u8 = 1; // receiving a request's body
const HANDLING: u8 = 2; // a handler runs

#[derive(Clone)]
struct Entry {
    state: Arc<AtomicU8>,
    shed: Arc<Notify>,
}

/// The open connections, oldest first (ids only grow).
#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Entry>,
}

impl Table {
    /// Sheds the oldest connection not running a handler; false when every one is.
    fn shed_one(&mut self) -> bool {
        let oldest =
            self.open.iter().find(|(_, e)| e.state.load(Ordering::Relaxed) != HANDLING).map(|(id, _)| *id);
        match oldest.and_then(|id| self.open.remove(&id)) {
            Some(entry) => {
                entry.shed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes its connection from the table when the connection's task ends.
struct Registered {
    table: Arc<Mutex<Table>>,
    id: u64,
    /// The connection's entry in the table.
    entry: Entry,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.table).open.remove(&self.id);
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the connections of one server share: the routes, the limits, the table of open
/// connections, and the signal that the server is closing (every connection task holds a
/// receiver of it).
#[derive(Clone)]
struct Shared {
    app: Router,
    limits: Limits,
    table: Arc<Mutex<Table>>,
    closed: watch::Receiver<bool>,
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then lets the requests
/// in progress finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (closing, closed) = watch::channel(false);
    let shared = Shared { app, limits, table: Arc::new(Mutex::new(Table::default())), closed };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => admit(stream, &shared),
            Err(e) => {
                // Most likely out of descriptors: the next connection in the backlog (maybe a
                // probe) gets the one a slow client held. The pause keeps a persistent error
                // from spinning the loop.
                let shed = lock(&shared.table).shed_one();
                warn!(error = %e, shed, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    drop(listener);
    drop(shared);
    closing.send_replace(true);
    // Every connection task holds a receiver; all gone means all requests finished.
    closing.closed().await;
    Ok(())
}

/// Registers `stream`, shedding another connection when the table is full, and serves it.
fn admit(stream: TcpStream, shared: &Shared) {
    let entry = Entry { state: Arc::new(AtomicU8::new(WAITING)), shed: Arc::new(Notify::new()) };
    let registered = {
        let mut t = lock(&shared.table);
        if t.open.len() >= shared.limits.max_connections && !t.shed_one() {
            debug!("HTTP connection refused: every connection is running a handler");
            return;
        }
        t.next_id += 1;
        let id = t.next_id;
        t.open.insert(id, entry.clone());
        Registered { table: shared.table.clone(), id, entry }
    };
    tokio::spawn(connection(stream, shared.clone(), registered));
}

/// Serves one connection until it ends, is shed, or the server closes (then the request in
/// progress finishes).
async fn connection(stream: TcpStream, shared: Shared, registered: Registered) {
    let Shared { app, limits, mut closed, .. } = shared;
    let (state, shed) = (registered.entry.state.clone(), registered.entry.shed.clone());
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (app, state) = (app.clone(), state.clone());
        async move {
            let receiving = !req.body().is_end_stream();
            state.store(if receiving { RECEIVING } else { HANDLING }, Ordering::Relaxed);
            let req = req.map(|body| Body::new(Deadline::new(body, limits.body_read_timeout, state.clone())));
            let response = app.oneshot(req).await;
            state.store(WAITING, Ordering::Relaxed);
            response
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "HTTP connection ended");
                }
                return;
            }
            () = shed.notified() => {
                debug!("HTTP connection shed to make room for a new one");
                return;
            }
            _ = closed.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A request body that fails once its deadline passes, and marks its connection as handling
/// (not sheddable) once it has been received whole.
struct Deadline {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    after: Duration,
    state: Arc<AtomicU8>,
}

impl Deadline {
    fn new(inner: Incoming, after: Duration, state: Arc<AtomicU8>) -> Self {
        Deadline { inner, deadline: Box::pin(tokio::time::sleep(after)), after, state }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.state.store(HANDLING, Ordering::Relaxed);
            let why = format!("the request body did not arrive within {}s", this.after.as_secs());
            return Poll::Ready(Some(Err(why.into())));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.state.store(HANDLING, Ordering::Relaxed);
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        time::Instant,
    };

    use axum::routing::{get, post};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    async fn start(limits: Limits) -> (String, tokio::sync::oneshot::Sender<()>) {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/echo", post(|body: Bytes| async move { format!("{}", body.len()) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// One request on a new connection (blocking std sockets, off the runtime); the whole
    /// response, or what came before the server closed or `WAIT` passed.
    async fn request(addr: &str, text: &str) -> String {
        let (addr, text) = (addr.to_string(), text.to_string());
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            stream.write_all(text.as_bytes()).unwrap();
            let mut out = String::new();
            let _ = stream.read_to_string(&mut out);
            out
        })
        .await
        .unwrap()
    }

    async fn healthz(addr: &str) -> String {
        let started = Instant::now();
        let answer = request(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(started.elapsed() < WAIT, "no answer in time: {answer:?}");
        answer
    }

    /// Connections that have sent part of a request head and then nothing: what exhausted the
    /// server.
    fn slow_clients(addr: &str, count: usize) -> Vec<std::net::TcpStream> {
        (0..count)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").unwrap();
                s
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_clients_filling_the_table_never_keep_a_probe_out() {
        let limits =
            Limits { max_connections: 4, header_read_timeout: WAIT * 6, body_read_timeout: WAIT * 6 };
        let (addr, _stop) = start(limits).await;
        let _slow = slow_clients(&addr, 12);
        for _ in 0..3 {
            let answer = healthz(&addr).await;
            assert!(answer.ends_with("ok\n"), "{answer:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_head_or_body_that_does_not_arrive_in_time_ends_the_connection() {
        let short = Duration::from_millis(300);
        let limits = Limits { max_connections: 64, header_read_timeout: short, body_read_timeout: short };
        let (addr, _stop) = start(limits).await;
        let started = Instant::now();
        let mut slow = slow_clients(&addr, 1).remove(0);
        let closed = tokio::task::spawn_blocking(move || {
            slow.set_read_timeout(Some(WAIT)).unwrap();
            let mut rest = Vec::new();
            slow.read_to_end(&mut rest).is_ok()
        });
        assert!(closed.await.unwrap(), "the server closed the connection");
        assert!(started.elapsed() >= short && started.elapsed() < WAIT, "{:?}", started.elapsed());

        let head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n12345";
        let answer = request(&addr, head).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let whole =
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n1234567890";
        let answer = request(&addr, whole).await;
        assert!(answer.ends_with("\r\n\r\n10"), "{answer}");
    }
}
