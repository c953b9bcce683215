//! Connections to RabbitMQ when it runs as a cluster. `AMQP_URL` names every node, separated
//! by commas; a client connects to one of them, starting at a random node so that clients
//! spread over the cluster, and moves on to the next when that one does not answer. Every
//! client reconnects through here after a failure, so losing a node costs one reconnect.

use std::io::ErrorKind;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use rand::Rng;

/// How long one node may take to accept a connection before the next is tried: a node
/// stopped by SIGSTOP or cut off by a partition never refuses, it just never answers.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// More nodes than this in one list is a configuration mistake, not a cluster.
pub const NODES_MAX: usize = 16;

/// The node URLs of a comma-separated `AMQP_URL`, blanks dropped.
pub fn nodes(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .take(NODES_MAX)
        .collect()
}

/// Connects to the first node that answers, starting at a random one. Fails with the last
/// node's error when none does.
pub async fn connect(urls: &str) -> lapin::Result<Connection> {
    let nodes = nodes(urls);
    if nodes.is_empty() {
        return Err(io_error(
            ErrorKind::InvalidInput,
            "AMQP_URL names no broker node",
        ));
    }
    let start = rand::thread_rng().gen_range(0..nodes.len());
    let mut last_error = None;
    for offset in 0..nodes.len() {
        let url = nodes[(start + offset) % nodes.len()];
        let attempt = Connection::connect(url, ConnectionProperties::default());
        match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), attempt).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(error)) => {
                tracing::debug!(node = offset, %error, "broker node refused; trying the next");
                last_error = Some(error);
            }
            Err(_) => {
                tracing::debug!(node = offset, "broker node did not answer; trying the next");
                last_error = Some(io_error(ErrorKind::TimedOut, "broker node did not answer"));
            }
        }
    }
    Err(last_error.unwrap_or_else(|| io_error(ErrorKind::NotConnected, "no broker node")))
}

fn io_error(kind: ErrorKind, message: &str) -> lapin::Error {
    std::io::Error::new(kind, message.to_owned()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_nodes_is_split_on_commas_without_blanks() {
        assert_eq!(
            nodes("amqp://a:1/%2f, amqp://b:2/%2f,,amqp://c:3/%2f "),
            vec!["amqp://a:1/%2f", "amqp://b:2/%2f", "amqp://c:3/%2f"]
        );
        assert_eq!(nodes("amqp://only/%2f"), vec!["amqp://only/%2f"]);
        assert!(nodes(" , ").is_empty());
    }

    #[tokio::test]
    async fn a_dead_node_is_skipped_for_one_that_answers() {
        let Ok(live) = std::env::var("AMQP_URL") else {
            panic!("AMQP_URL must name the test broker (make test sets it)");
        };
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let list = format!("amqp://guest:guest@127.0.0.1:9/%2f,{live}");
        for _ in 0..4 {
            let connection = connect(&list).await.expect("the live node answers");
            assert!(connection.status().connected());
            connection.close(200, "done".into()).await.expect("closes");
        }
        let error = connect("amqp://guest:guest@127.0.0.1:9/%2f").await;
        assert!(error.is_err(), "no node answers: an error, not a hang");
    }
}
