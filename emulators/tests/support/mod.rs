//! A tiny webhook receiver for the emulator tests: records every POST (body, headers, peer)
//! and answers the scripted statuses in order, then `200`.

use std::collections::VecDeque;
use std::net::{IpAddr, TcpListener};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub peer: Option<IpAddr>,
}

pub struct Receiver {
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
    pub async fn start(script: &[u16]) -> Receiver {
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

    pub async fn next(&mut self) -> Delivery {
        tokio::time::timeout(Duration::from_secs(5), self.deliveries.recv())
            .await
            .expect("no webhook arrived in time")
            .expect("receiver closed")
    }

    pub async fn assert_quiet(&mut self) {
        if let Ok(Some(d)) =
            tokio::time::timeout(Duration::from_millis(300), self.deliveries.recv()).await
        {
            panic!("unexpected webhook: {}", String::from_utf8_lossy(&d.body));
        }
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

/// Options of the emulators built on the shared kit (Maya, PayMongo) that keep tests fast:
/// quick webhook retries and a short fault hold.
#[allow(dead_code)] // the other emulators' tests have options of their own
pub fn fast_kit_options() -> emulators::maya::EmulatorOptions {
    emulators::maya::EmulatorOptions {
        webhook_retry: emulators::WebhookRetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        },
        webhook_timeout: Duration::from_secs(2),
        fault_timeout: Duration::from_millis(700),
        workers: 1,
        shutdown_timeout_secs: 1,
        ..emulators::maya::EmulatorOptions::default()
    }
}

/// A GCash payment of `amount` PHP, as payledger asks a GCash provider to start one.
#[allow(dead_code)] // the GCash providers' tests only
pub fn gcash_request(amount: &str) -> connectors::CreateTransaction {
    connectors::CreateTransaction {
        payment_id: domain::PaymentId::from_uuid(uuid::Uuid::new_v4()),
        reference: format!("order-{}", uuid::Uuid::new_v4().simple()),
        amount: domain::Money::parse(amount, domain::Currency::PHP).expect("an amount"),
        method: connectors::PaymentMethodDetails::Gcash,
        capture_mode: domain::CaptureMode::Automatic,
        customer_email: Some("juan@example.com".into()),
        customer: Default::default(),
        return_url: Some("https://shop.example/return".into()),
    }
}
