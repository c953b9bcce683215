//! Pieces the Maya and PayMongo emulators share: options, a bounded at-least-once webhook
//! outbox (signed per attempt, since PayMongo's signature carries the time of sending), the
//! `POST /_sandbox/faults` switch, the Basic-auth check and the running server's handle.
//!
//! Kept here (rather than beside `crate::sandbox`'s own delivery) because that module is
//! private to the card sandbox; only its `pub` retry policy is reused.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::sandbox::WebhookRetryPolicy;

/// Tuning with production-like defaults; tests shrink delays and bounds.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    pub webhook_retry: WebhookRetryPolicy,
    /// Webhooks waiting or being retried at once; a customer action beyond it answers `503`.
    pub webhook_queue_capacity: usize,
    /// Timeout of one webhook POST.
    pub webhook_timeout: Duration,
    /// Webhook POSTs in flight at once.
    pub webhook_concurrency: usize,
    /// Payments (or payment intents) kept; a create beyond it answers `503`.
    pub records_max: usize,
    /// How long the `timeout` and `approved_timeout` faults hold the create call's answer.
    pub fault_timeout: Duration,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            webhook_retry: WebhookRetryPolicy::default(),
            webhook_queue_capacity: 10_000,
            webhook_timeout: Duration::from_secs(5),
            webhook_concurrency: 32,
            records_max: 100_000,
            fault_timeout: Duration::from_secs(30),
            workers: 2,
            shutdown_timeout_secs: 5,
        }
    }
}

/// Headers for one delivery attempt of a body, made at the time of sending.
pub(crate) type Signer =
    Arc<dyn Fn(&[u8], DateTime<Utc>) -> Vec<(&'static str, String)> + Send + Sync>;

/// A reserved place in the outbox: taken *before* a state change, so a webhook is never
/// silently dropped for lack of room (the action answers `503` instead).
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

struct Job {
    body: Vec<u8>,
    due: Instant,
    _slot: Slot,
}

/// The producer side of the webhook queue.
#[derive(Clone)]
pub(crate) struct Outbox {
    slots: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    deliver: bool,
}

impl Outbox {
    pub(crate) fn try_reserve(&self) -> Option<Slot> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .ok()
            .map(|permit| Slot { _permit: permit })
    }

    /// Queues `body` for delivery after `delay`. With delivery switched off the webhook is
    /// "lost" on purpose (sync and reconciler tests). Fails only once the dispatcher stopped.
    pub(crate) fn send(&self, slot: Slot, body: Vec<u8>, delay: Duration) -> bool {
        if !self.deliver {
            return true;
        }
        self.jobs
            .try_send(Job {
                body,
                due: Instant::now() + delay,
                _slot: slot,
            })
            .is_ok()
    }
}

/// Starts the dispatcher on the current runtime.
pub(crate) fn outbox(
    url: &str,
    signer: Signer,
    options: &EmulatorOptions,
    deliver: bool,
) -> io::Result<(Outbox, JoinHandle<()>)> {
    let url = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| invalid_input("webhook_url must be an http(s) URL"))?;
    let http = crate::sandbox::webhook_client("payledger-emulator", options.webhook_timeout)?;
    let capacity = options.webhook_queue_capacity.max(1);
    let (jobs, mut rx) = mpsc::channel::<Job>(capacity);
    let outbox = Outbox {
        slots: Arc::new(Semaphore::new(capacity)),
        jobs,
        deliver,
    };
    let posts = Arc::new(Semaphore::new(options.webhook_concurrency.max(1)));
    let retry = options.webhook_retry;
    let task = tokio::spawn(async move {
        let mut deliveries = JoinSet::new();
        loop {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => {
                        deliveries.spawn(deliver_one(
                            job,
                            http.clone(),
                            url.clone(),
                            Arc::clone(&signer),
                            retry,
                            Arc::clone(&posts),
                        ));
                    }
                    None => break,
                },
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            }
        }
        while deliveries.join_next().await.is_some() {}
    });
    Ok((outbox, task))
}

async fn deliver_one(
    job: Job,
    http: reqwest::Client,
    url: reqwest::Url,
    signer: Signer,
    retry: WebhookRetryPolicy,
    posts: Arc<Semaphore>,
) {
    tokio::time::sleep_until(job.due).await;
    let attempts = retry.max_attempts.max(1);
    for attempt in 1..=attempts {
        let outcome = {
            let Ok(_post) = posts.acquire().await else {
                return;
            };
            let mut request = http
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json");
            for (name, value) in signer(&job.body, Utc::now()) {
                request = request.header(name, value);
            }
            request.body(job.body.clone()).send().await
        };
        match outcome {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => tracing::info!(
                attempt,
                status = response.status().as_u16(),
                "emulator: webhook refused, will retry"
            ),
            Err(error) => tracing::info!(
                attempt,
                error = %error.without_url(),
                "emulator: webhook not delivered, will retry"
            ),
        }
        if attempt < attempts {
            tokio::time::sleep(retry.delay_after(attempt)).await;
        }
    }
    tracing::warn!(attempts, "emulator: webhook given up");
}

/// What the create-transaction call does, switched by `POST /_sandbox/faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateFault {
    None,
    /// Refused with a `500` before anything is made.
    ServerError,
    /// Held `fault_timeout`, then `504`, with nothing made.
    Timeout,
    /// The create takes effect, then its answer is held `fault_timeout` and ends `504`.
    ApprovedTimeout,
    /// The create takes effect, then it answers `503`.
    Approved503,
    /// The create answers normally, but no webhook is ever sent for what it made.
    Silent,
}

impl CreateFault {
    const ALL: [CreateFault; 6] = [
        CreateFault::None,
        CreateFault::ServerError,
        CreateFault::Timeout,
        CreateFault::ApprovedTimeout,
        CreateFault::Approved503,
        CreateFault::Silent,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            CreateFault::None => "none",
            CreateFault::ServerError => "server_error",
            CreateFault::Timeout => "timeout",
            CreateFault::ApprovedTimeout => "approved_timeout",
            CreateFault::Approved503 => "approved_503",
            CreateFault::Silent => "silent",
        }
    }

    /// `approved_silent` is the name the other emulators give `silent`.
    fn parse(name: &str) -> Option<CreateFault> {
        if name == "approved_silent" {
            return Some(CreateFault::Silent);
        }
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    fn code(self) -> u8 {
        match self {
            CreateFault::None => 0,
            CreateFault::ServerError => 1,
            CreateFault::Timeout => 2,
            CreateFault::ApprovedTimeout => 3,
            CreateFault::Approved503 => 4,
            CreateFault::Silent => 5,
        }
    }
}

/// The fault switch, shared by the HTTP workers.
#[derive(Debug, Default)]
pub(crate) struct Faults(AtomicU8);

impl Faults {
    pub(crate) fn create(&self) -> CreateFault {
        let code = self.0.load(Ordering::SeqCst);
        CreateFault::ALL
            .into_iter()
            .find(|f| f.code() == code)
            .unwrap_or(CreateFault::None)
    }

    fn set(&self, fault: CreateFault) {
        self.0.store(fault.code(), Ordering::SeqCst);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsRequest {
    create: String,
}

/// `POST /_sandbox/faults` `{"create":"none"|"server_error"|"timeout"|"approved_timeout"|
/// "approved_503"|"silent"}`.
pub(crate) async fn set_faults(faults: web::Data<Faults>, body: web::Bytes) -> HttpResponse {
    let fault = serde_json::from_slice::<FaultsRequest>(&body)
        .ok()
        .and_then(|r| CreateFault::parse(&r.create));
    match fault {
        Some(fault) => {
            faults.set(fault);
            HttpResponse::Ok().json(serde_json::json!({ "create": fault.name() }))
        }
        None => HttpResponse::BadRequest().json(serde_json::json!({
            "error": "invalid_request",
            "message": "expected {\"create\":\"none\"|\"server_error\"|\"timeout\"|\"approved_timeout\"|\"approved_503\"|\"silent\"}"
        })),
    }
}

/// Whether the request carries `Authorization: Basic base64("<one of keys>:")` (compared in
/// constant time).
pub(crate) fn basic_key_matches(req: &HttpRequest, keys: &[&str]) -> bool {
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(user) = decoded.strip_suffix(b":") else {
        return false;
    };
    let mut matched = false;
    for key in keys.iter().filter(|k| !k.is_empty()) {
        matched |= bool::from(user.ct_eq(key.as_bytes()));
    }
    matched
}

pub(crate) fn invalid_input(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_owned())
}

/// A running emulator: its HTTP server and its webhook dispatcher.
pub(crate) struct Running {
    pub addr: SocketAddr,
    server: ServerHandle,
    server_task: JoinHandle<io::Result<()>>,
    dispatcher: JoinHandle<()>,
}

impl Running {
    pub(crate) fn spawn(addr: SocketAddr, server: Server, dispatcher: JoinHandle<()>) -> Running {
        let handle = server.handle();
        Running {
            addr,
            server: handle,
            server_task: tokio::spawn(server),
            dispatcher,
        }
    }

    /// Stops accepting, lets requests in flight finish (bounded by the shutdown timeout),
    /// then drops webhooks not yet delivered.
    pub(crate) async fn stop(self) {
        self.server.stop(true).await;
        if let Err(error) = self.server_task.await {
            tracing::warn!(%error, "emulator: server task ended abnormally");
        }
        self.dispatcher.abort();
        let _ = self.dispatcher.await;
    }
}

/// A page a person can use in a browser to play the customer (the tests POST directly).
pub(crate) fn customer_page(title: &str, actions: &[(&str, &str)]) -> HttpResponse {
    let mut html =
        format!("<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1>");
    for (label, path) in actions {
        html.push_str(&format!(
            "<form method=post action=\"{path}\"><button>{label}</button></form>"
        ));
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html)
}

/// A tiny webhook receiver for tests: records every POST (body, headers, peer) and answers
/// the scripted statuses in order, then `200`.
#[cfg(test)]
pub(crate) mod receiver {
    use std::collections::VecDeque;
    use std::net::{IpAddr, TcpListener};
    use std::sync::Mutex;
    use std::time::Duration;

    use actix_web::dev::ServerHandle;
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use tokio::sync::mpsc;

    #[derive(Debug, Clone)]
    pub(crate) struct Delivery {
        pub body: Vec<u8>,
        pub headers: Vec<(String, String)>,
        pub peer: Option<IpAddr>,
    }

    pub(crate) struct Receiver {
        pub url: String,
        server: ServerHandle,
        deliveries: mpsc::UnboundedReceiver<Delivery>,
    }

    struct State {
        script: Mutex<VecDeque<u16>>,
        seen: mpsc::UnboundedSender<Delivery>,
    }

    async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
        let headers = req
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_lowercase(), v.to_str().ok()?.to_owned())))
            .collect();
        let _ = state.seen.send(Delivery {
            body: body.to_vec(),
            headers,
            peer: req.peer_addr().map(|a| a.ip()),
        });
        let status = state.script.lock().unwrap().pop_front().unwrap_or(200);
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
    }

    impl Receiver {
        pub(crate) async fn start(script: &[u16]) -> Receiver {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (seen, deliveries) = mpsc::unbounded_channel();
            let state = web::Data::new(State {
                script: Mutex::new(script.iter().copied().collect()),
                seen,
            });
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .route("/hook", web::post().to(receive))
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)
            .unwrap()
            .run();
            let handle = server.handle();
            tokio::spawn(server);
            Receiver {
                url: format!("http://{addr}/hook"),
                server: handle,
                deliveries,
            }
        }

        pub(crate) async fn next(&mut self) -> Delivery {
            tokio::time::timeout(Duration::from_secs(5), self.deliveries.recv())
                .await
                .expect("no webhook arrived in time")
                .expect("receiver closed")
        }

        pub(crate) async fn assert_quiet(&mut self) {
            if let Ok(Some(d)) =
                tokio::time::timeout(Duration::from_millis(300), self.deliveries.recv()).await
            {
                panic!("unexpected webhook: {}", String::from_utf8_lossy(&d.body));
            }
        }

        pub(crate) async fn stop(self) {
            self.server.stop(false).await;
        }
    }
}
