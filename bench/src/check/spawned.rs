//! The `payledger` binary, spawned against the database under a time bound, its output read
//! whole but kept only up to a bound.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{progress, CheckConfig, PROGRESS_INTERVAL};

/// What is kept of a spawned process's stdout and stderr each; the rest is read and dropped.
const OUTPUT_BYTES_MAX: u64 = 1024 * 1024;

/// Output of a spawned process, what was kept of it.
pub(super) struct Spawned {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Reads a pipe to its end, keeping the first `OUTPUT_BYTES_MAX` bytes: the child never
/// blocks on a full pipe, and memory stays bounded.
async fn read_bounded(mut pipe: impl AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
    let _ = (&mut pipe)
        .take(OUTPUT_BYTES_MAX)
        .read_to_end(&mut kept)
        .await;
    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&kept).into_owned()
}

/// Runs `payledger <args>` against the database, killed if it outlives `timeout`.
pub(super) async fn spawn_payledger(
    config: &CheckConfig,
    args: &[&str],
    timeout: Duration,
) -> Result<Spawned, String> {
    let shown = format!("{} {}", config.payledger.display(), args.join(" "));
    let mut child = tokio::process::Command::new(&config.payledger)
        .args(args)
        .env("DATABASE_URL", &config.database_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawning {shown}: {e}"))?;
    let stdout = child.stdout.take().map(|p| tokio::spawn(read_bounded(p)));
    let stderr = child.stderr.take().map(|p| tokio::spawn(read_bounded(p)));
    let started = Instant::now();
    let status = loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            let _ = child.kill().await;
            return Err(format!(
                "{shown} did not finish within {} s (killed)",
                timeout.as_secs()
            ));
        }
        match tokio::time::timeout(left.min(PROGRESS_INTERVAL), child.wait()).await {
            Ok(status) => break status.map_err(|e| format!("{shown}: {e}"))?,
            Err(_) => progress(format_args!(
                "{shown}: running for {:.0} s",
                started.elapsed().as_secs_f64()
            )),
        }
    };
    let collect = |task: Option<tokio::task::JoinHandle<String>>| async move {
        match task {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        }
    };
    Ok(Spawned {
        status,
        stdout: collect(stdout).await,
        stderr: collect(stderr).await,
    })
}

pub(super) fn tail(text: &str, chars: usize) -> String {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(chars);
    text.chars().skip(skip).collect()
}
