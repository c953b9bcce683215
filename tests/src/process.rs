//! `payledger` as real processes (the release binary `make test` builds), for the drills that
//! kill them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

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

/// `payledger serve <args>` on 127.0.0.1:`port` with `env` added to this process's own
/// environment; quiet; killed when dropped.
pub fn serve(args: &[&str], port: u16, env: &[(&str, &str)]) -> Child {
    Command::new(binary())
        .arg("serve")
        .args(args)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start payledger")
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
