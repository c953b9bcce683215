//! `payledger` as real processes (the release binary `make test` builds), for the drills that
//! kill them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use tokio::process::{Child, Command};

/// The binary `make test` builds (`PAYLEDGER_BIN` to test another).
pub fn binary() -> PathBuf {
    let path = std::env::var("PAYLEDGER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/payledger")
        });
    assert!(
        path.exists(),
        "{} is missing: `make test` builds it (cargo build --release -p api --bin payledger)",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn serve_command(args: &[&str], port: u16, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary());
    command
        .arg("serve")
        .args(args)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .envs(
            [
                "RATE_LIMIT_COMMANDS",
                "RATE_LIMIT_READS",
                "RATE_LIMIT_ADDRESS",
            ]
            .map(|n| (n, "off")),
        )
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// `payledger serve <args>` on 127.0.0.1:`port` with `env` added to this process's own
/// environment; quiet; killed when dropped.
pub fn serve(args: &[&str], port: u16, env: &[(&str, &str)]) -> Child {
    serve_command(args, port, env)
        .spawn()
        .expect("start payledger")
}

/// `serve`, writing its JSON log lines (level info) to `log`.
pub fn serve_logged(args: &[&str], port: u16, env: &[(&str, &str)], log: &Path) -> Child {
    let file = std::fs::File::create(log).expect("log file");
    serve_command(args, port, env)
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stderr(Stdio::from(file))
        .spawn()
        .expect("start payledger")
}

/// A `payledger serve --sandbox` process of its own on a fresh database, with a pool on that
/// database: for what only a whole process shows (its metrics recorder, its log).
pub struct Served {
    pub base: String,
    pub pool: PgPool,
    pub http: reqwest::Client,
    _process: Child,
}

impl Served {
    /// `log`: where the process writes its JSON log; `None` for a quiet process.
    pub async fn start(log: Option<&Path>) -> Served {
        let database = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server");
        let (url, name) = crate::fresh_database(&database).await;
        let port = free_port();
        let prefix = format!("test.{name}");
        let env = [
            ("DATABASE_URL", url.as_str()),
            ("AMQP_PREFIX", prefix.as_str()),
            ("PROVIDERS", "sandbox"),
        ];
        let process = match log {
            Some(log) => serve_logged(&["--sandbox"], port, &env, log),
            None => serve(&["--sandbox"], port, &env),
        };
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        wait_ready(&http, &base).await;
        let pool = PgPool::connect(&url).await.expect("the server's database");
        Served {
            base,
            pool,
            http,
            _process: process,
        }
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let request = self.http.get(format!("{}{path}", self.base));
        let request = match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        request.send().await.expect("answers")
    }

    /// Creates an automatically captured sandbox payment with `token` and waits until it
    /// reaches `status`; answers its id.
    pub async fn payment(&self, key: &str, reference: &str, token: &str, status: &str) -> String {
        let created: Value = self
            .http
            .post(format!("{}/v1/payments", self.base))
            .bearer_auth(key)
            .header("Idempotency-Key", reference)
            .json(&crate::payment_body(
                "15.00",
                "USD",
                reference,
                token,
                "automatic",
            ))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        let id = created["id"].as_str().expect("created").to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let payment: Value = self
                .get(&format!("/v1/payments/{id}"), Some(key))
                .await
                .json()
                .await
                .expect("json");
            if payment["status"] == status {
                return id;
            }
            assert!(Instant::now() < deadline, "{payment}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits (up to a minute) until the process on `base` answers `/health/ready` with 200.
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(format!("{base}/health/ready")).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGKILL: no shutdown path runs, as when the machine or the OOM killer takes a process.
pub async fn kill_hard(child: &mut Child) {
    child.start_kill().expect("SIGKILL");
    let _status = child.wait().await;
}
