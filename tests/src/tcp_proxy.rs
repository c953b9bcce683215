//! A TCP proxy in front of a real service (the broker, the database) that a test can cut:
//! while cut, every open connection is closed and new ones are closed as soon as they are
//! accepted, as when the service's node dies; restored, it forwards again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut: connections opened before it see the change and close.
    generation: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpProxy {
    /// Forwards 127.0.0.1:<ephemeral> to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0_u64);
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let cut = cut.clone();
            let generation = generation.subscribe();
            let accepted = accepted.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    // Only cuts from now on close this connection.
                    let mut cuts = generation.clone();
                    cuts.mark_unchanged();
                    tokio::spawn(forward(client, upstream.clone(), cuts));
                }
            }
        });
        TcpProxy {
            addr,
            cut,
            generation,
            accepted,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Connections forwarded so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn forward(mut client: TcpStream, upstream: String, mut generation: watch::Receiver<u64>) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = generation.changed() => {}
    }
}

/// `url` with its `host:port` swapped for the proxy's (`scheme://user@host:port/rest`).
pub fn through(url: &str, proxy: &TcpProxy) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"));
    format!(
        "{scheme}://{}127.0.0.1:{}/{path}",
        user.unwrap_or_default(),
        proxy.port()
    )
}

/// The `host:port` of `url`.
pub fn upstream_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}
