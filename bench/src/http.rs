//! A thin HTTP client for payledger's public API: every call is bounded by a timeout, and
//! every failure comes back as a short, countable kind (never a panic).

use std::time::Duration;

use reqwest::Client;
use serde_json::Value;

#[derive(Clone)]
pub struct Api {
    client: Client,
    base: String,
    key: String,
    /// For `/health`'s figures (relay and projection lag), which only operators see.
    operator_key: Option<String>,
}

/// What went wrong with one call, as a short label to count by.
#[derive(Debug, Clone)]
pub enum CallError {
    /// No HTTP answer (connect, timeout, reset).
    Transport(String),
    /// An answer that is not 2xx: status and the problem `type` (or a body snippet).
    Status(u16, String),
    /// An answer whose body is not the JSON we expect, with its status.
    Body(u16, String),
}

impl CallError {
    pub fn kind(&self) -> String {
        match self {
            CallError::Transport(what) => format!("transport {what}"),
            CallError::Status(status, problem) => format!("HTTP {status} {problem}"),
            CallError::Body(_, what) => format!("bad body: {what}"),
        }
    }

    /// Worth another try with the same Idempotency-Key (which makes the retry safe).
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Transport(_) => true,
            CallError::Status(status, problem) => {
                *status >= 500 || *status == 429 || problem.contains("concurrent-update")
            }
            CallError::Body(..) => false,
        }
    }
}

fn transport_kind(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        "connect".into()
    } else if error.is_body() || error.is_decode() {
        "body".into()
    } else {
        "request".into()
    }
}

impl Api {
    pub fn new(
        base: &str,
        key: &str,
        operator_key: Option<&str>,
        pool: usize,
        timeout: Duration,
    ) -> reqwest::Result<Api> {
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(pool)
            // Under the server's keep-alive (actix: 5 s): a paced run leaves connections idle,
            // and a request sent on one the server is closing fails as "transport request".
            .pool_idle_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            operator_key: operator_key.map(str::to_owned),
        })
    }

    async fn finish(response: reqwest::Response) -> Result<(u16, Value), CallError> {
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Transport(transport_kind(&e)))?;
        if !(200..300).contains(&status) {
            let problem = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
                .map(|t| t.rsplit('/').next().unwrap_or(&t).to_owned())
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned()
                });
            return Err(CallError::Status(status, problem));
        }
        let json = serde_json::from_slice(&bytes)
            .map_err(|_| CallError::Body(status, "not JSON".into()))?;
        Ok((status, json))
    }

    pub async fn post(
        &self,
        path: &str,
        idempotency_key: &str,
        body: &Value,
    ) -> Result<(u16, Value), CallError> {
        let response = self
            .client
            .post(format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await
            .map_err(|e| CallError::Transport(transport_kind(&e)))?;
        Self::finish(response).await
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value), CallError> {
        let response = self
            .client
            .get(format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| CallError::Transport(transport_kind(&e)))?;
        Self::finish(response).await
    }

    /// `GET /health` with the operator key (it answers 503 with a body when a dependency is
    /// down; without the key it holds no figures).
    pub async fn health(&self) -> Result<Value, CallError> {
        let mut request = self.client.get(format!("{}/health", self.base));
        if let Some(key) = &self.operator_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Transport(transport_kind(&e)))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Transport(transport_kind(&e)))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(json) if status == 200 => Ok(json),
            Ok(json) => Err(CallError::Status(
                status,
                json.get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned(),
            )),
            Err(_) => Err(CallError::Body(status, "health is not JSON".into())),
        }
    }
}
