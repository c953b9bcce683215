//! Pieces the Maya and PayMongo emulators share: options, their side of the webhook outbox
//! (a JSON body fixed at the action, headers made per attempt, since PayMongo's signature
//! carries the time of sending), the `POST /_sandbox/faults` switch, the Basic-auth check
//! and the customer's page.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::task::JoinHandle;

pub(crate) use crate::outbox::Slot;
use crate::outbox::{self, Attempt, OutboxOptions, WebhookRetryPolicy};
use crate::server::ServerOptions;

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

impl EmulatorOptions {
    pub(crate) fn server(&self) -> ServerOptions {
        ServerOptions {
            workers: self.workers,
            shutdown_timeout_secs: self.shutdown_timeout_secs,
        }
    }
}

/// Headers for one delivery attempt of a body, made at the time of sending.
pub(crate) type Signer =
    Arc<dyn Fn(&[u8], DateTime<Utc>) -> Vec<(&'static str, String)> + Send + Sync>;

/// The producer side of the webhook queue.
#[derive(Clone)]
pub(crate) struct Outbox {
    queue: outbox::Outbox<Vec<u8>>,
    deliver: bool,
}

impl Outbox {
    pub(crate) fn try_reserve(&self) -> Option<Slot> {
        self.queue.try_reserve()
    }

    /// Queues `body` for delivery after `delay`. With delivery switched off the webhook is
    /// "lost" on purpose (sync and reconciler tests). Fails only once the dispatcher stopped.
    pub(crate) fn send(&self, slot: Slot, body: Vec<u8>, delay: Duration) -> bool {
        if !self.deliver {
            return true;
        }
        self.queue.schedule(slot, body, delay)
    }
}

struct Notifier {
    signer: Signer,
}

impl outbox::Notifier for Notifier {
    type Job = Vec<u8>;
    type Ready = Vec<u8>;

    fn due(&self, body: Vec<u8>) -> Option<Vec<u8>> {
        Some(body)
    }

    fn attempt(&self, body: &Vec<u8>, _: u32) -> io::Result<Attempt> {
        Ok(Attempt::json(body.clone(), (self.signer)(body, Utc::now())))
    }

    fn label(&self, _: &Vec<u8>) -> String {
        String::new()
    }
}

/// Starts the dispatcher on the current runtime.
pub(crate) fn outbox(
    name: &'static str,
    url: &str,
    signer: Signer,
    options: &EmulatorOptions,
    deliver: bool,
) -> io::Result<(Outbox, JoinHandle<()>)> {
    let url = outbox::webhook_url(name, url)?;
    let (queue, dispatcher) = outbox::start(
        url,
        Notifier { signer },
        &OutboxOptions {
            name,
            capacity: options.webhook_queue_capacity,
            retry: options.webhook_retry,
            timeout: options.webhook_timeout,
            concurrency: options.webhook_concurrency,
        },
    )?;
    Ok((Outbox { queue, deliver }, dispatcher))
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
