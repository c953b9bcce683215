//! A gateway between payledger and its provider emulators that loses answers on the socket:
//! it forwards each request to the emulator (which acts on it), then, when a rule matches,
//! cuts the connection unanswered or holds the answer past the client's timeout. Set as
//! `SandboxSettings::emulator_gateway`: adapters then call `<gateway>/<provider>/<path>`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Largest request head or body relayed, and largest answer read from an emulator.
const HEAD_BYTES_MAX: usize = 64 * 1024;
const BODY_BYTES_MAX: usize = 1024 * 1024;

/// What happens to the answer of a matching request, after the emulator got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The connection is closed without a byte of the answer.
    Cut,
    /// The answer is held this long, then sent (normally after the client gave up).
    Hold(Duration),
}

#[derive(Debug, Clone)]
struct Rule {
    provider: String,
    method: String,
    path_contains: String,
    loss: Loss,
    remaining: usize,
}

/// One request relayed: which provider, method and path, and whether its answer was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub provider: String,
    pub method: String,
    pub path: String,
    pub lost: bool,
}

#[derive(Default)]
struct Shared {
    upstreams: Mutex<BTreeMap<String, String>>,
    rules: Mutex<Vec<Rule>>,
    relayed: Mutex<Vec<Relayed>>,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start() -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let serving = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = Arc::clone(&serving);
                tokio::spawn(async move {
                    let _ = relay(client, shared).await;
                });
            }
        });
        FaultProxy { addr, shared, task }
    }

    /// The gateway URL for `SandboxSettings::emulator_gateway`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where each provider's emulator listens (`TestApp::emulators`).
    pub fn route_to(&self, emulators: &BTreeMap<String, String>) {
        let mut upstreams = self.shared.upstreams.lock().unwrap();
        for (provider, url) in emulators {
            let host = url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            upstreams.insert(provider.clone(), host);
        }
    }

    /// Loses the answer of the next `times` requests to `provider` with this method whose path
    /// contains `path_contains`.
    pub fn lose(
        &self,
        provider: &str,
        method: &str,
        path_contains: &str,
        loss: Loss,
        times: usize,
    ) {
        self.shared.rules.lock().unwrap().push(Rule {
            provider: provider.to_owned(),
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            loss,
            remaining: times,
        });
    }

    /// Every request relayed so far.
    pub fn relayed(&self) -> Vec<Relayed> {
        self.shared.relayed.lock().unwrap().clone()
    }

    /// How many requests to `provider` with this method and path fragment were relayed.
    pub fn count(&self, provider: &str, method: &str, path_contains: &str) -> usize {
        self.relayed()
            .iter()
            .filter(|r| {
                r.provider == provider && r.method == method && r.path.contains(path_contains)
            })
            .count()
    }
}

/// Relays one request (the answer carries `Connection: close`, so one per connection).
async fn relay(mut client: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut client).await? else {
        return Ok(());
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default();
    let trimmed = target.trim_start_matches('/');
    let (provider, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let path = format!("/{rest}");
    let Some(upstream) = shared.upstreams.lock().unwrap().get(provider).cloned() else {
        client
            .write_all(
                b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await?;
        return Ok(());
    };
    let loss = {
        let mut rules = shared.rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| {
                r.remaining > 0
                    && r.provider == provider
                    && r.method == method
                    && path.contains(&r.path_contains)
            })
            .map(|r| {
                r.remaining -= 1;
                r.loss
            })
    };
    shared.relayed.lock().unwrap().push(Relayed {
        provider: provider.to_owned(),
        method: method.clone(),
        path: path.clone(),
        lost: loss.is_some(),
    });
    let mut forwarded = format!("{method} {path} HTTP/1.1\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name != "host" && name != "connection" {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str(&format!("host: {upstream}\r\nconnection: close\r\n\r\n"));
    let mut server = TcpStream::connect(&upstream).await?;
    server.write_all(forwarded.as_bytes()).await?;
    server.write_all(&body).await?;
    let mut answer = Vec::new();
    (&mut server)
        .take(BODY_BYTES_MAX as u64)
        .read_to_end(&mut answer)
        .await?;
    match loss {
        Some(Loss::Cut) => Ok(()), // dropped: the client sees the connection close unanswered
        Some(Loss::Hold(hold)) => {
            tokio::time::sleep(hold).await;
            client.write_all(&answer).await
        }
        None => client.write_all(&answer).await,
    }
}

/// The request head (up to its blank line) and its `content-length` body.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > HEAD_BYTES_MAX {
            return Ok(None);
        }
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(BODY_BYTES_MAX);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Ok(Some((head, body)))
}
