//! The HTTP skeleton every emulator runs on: an actix-web server on a given listener, with a
//! bounded request body, no signal handling of its own (the embedding process owns
//! signals), and a handle that stops the server and then the emulator's background tasks.

use std::io;
use std::net::{SocketAddr, TcpListener};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

/// Largest request body any emulator accepts.
pub const REQUEST_BODY_MAX_BYTES: usize = 64 * 1024;

/// Worker threads and the graceful-stop bound of one emulator's server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerOptions {
    pub workers: usize,
    /// Seconds a graceful stop waits for requests in flight.
    pub shutdown_timeout_secs: u64,
}

/// A running emulator: its HTTP server and its background tasks (webhook dispatcher, expiry
/// sweeper). Dropping it leaves everything running; call [`EmulatorHandle::stop`].
pub struct EmulatorHandle {
    name: &'static str,
    addr: SocketAddr,
    base_path: &'static str,
    server: ServerHandle,
    server_task: JoinHandle<io::Result<()>>,
    background: Vec<JoinHandle<()>>,
}

impl EmulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>` plus the API's path prefix where the provider's clients expect one
    /// (Wompi's `/v1`): the base URL to configure the client with.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.base_path)
    }

    /// Stops accepting, lets requests in flight finish (bounded by the shutdown timeout),
    /// then stops the background tasks, dropping webhooks not yet delivered.
    pub async fn stop(self) {
        self.server.stop(true).await;
        if let Err(error) = self.server_task.await {
            tracing::warn!(name = self.name, %error, "emulator: server task ended abnormally");
        }
        for task in &self.background {
            task.abort();
        }
        for task in self.background {
            let _ = task.await;
        }
    }
}

/// Serves `routes` on `listener` on the current tokio runtime. `background` is stopped with
/// the server (and at once when the server cannot start).
pub(crate) fn start<F>(
    name: &'static str,
    listener: TcpListener,
    base_path: &'static str,
    options: ServerOptions,
    routes: F,
    background: Vec<JoinHandle<()>>,
) -> io::Result<EmulatorHandle>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let abort_all = |error: io::Error| {
        for task in &background {
            task.abort();
        }
        error
    };
    let addr = listener.local_addr().map_err(abort_all)?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::PayloadConfig::new(REQUEST_BODY_MAX_BYTES))
            .configure(routes.clone())
    })
    .workers(options.workers.max(1))
    .disable_signals()
    .shutdown_timeout(options.shutdown_timeout_secs)
    .listen(listener)
    .map_err(abort_all)?
    .run();
    let server_handle = server.handle();
    let server_task = tokio::spawn(server);
    tracing::info!(name, %addr, "emulator listening");
    Ok(EmulatorHandle {
        name,
        addr,
        base_path,
        server: server_handle,
        server_task,
        background,
    })
}
