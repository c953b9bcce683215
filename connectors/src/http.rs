//! What every provider's HTTP client does the same way: read a bounded body, and turn a
//! transport failure into a `ProviderError` whose detail never carries a secret.

use domain::ProviderFailureKind;

use crate::ProviderError;

/// Reads at most `max_bytes` of `response`; more is the provider's error, not ours to buffer.
pub async fn read_body(
    label: &str,
    mut response: reqwest::Response,
    max_bytes: usize,
    on_transport_error: impl Fn(reqwest::Error) -> ProviderError,
) -> Result<Vec<u8>, ProviderError> {
    let too_large =
        || ProviderError::server_error(format!("{label} response exceeds {max_bytes} bytes"));
    if response
        .content_length()
        .is_some_and(|len| len > max_bytes as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(&on_transport_error)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A failure that produced no answer: a timeout, or a connection that could not be made or
/// broke. `scrub` removes the adapter's secrets from the detail, whatever a library put in it.
pub fn transport_error(
    label: &str,
    error: reqwest::Error,
    timeout_ms: u64,
    scrub: impl Fn(&str) -> String,
) -> ProviderError {
    let error = error.without_url();
    // A connect error (refused, DNS, TLS, or the connect timeout) fails before any byte of
    // the request is written: the provider cannot have acted on it.
    let never_sent = error.is_connect();
    if error.is_timeout() {
        let timeout =
            ProviderError::timeout(format!("{label} did not answer within {timeout_ms} ms"));
        return if never_sent {
            timeout.never_sent()
        } else {
            timeout
        };
    }
    let kind = if error.is_connect() {
        format!("cannot connect to {label}")
    } else {
        format!("{label} connection failed")
    };
    let error = ProviderError::new(
        ProviderFailureKind::Connection,
        scrub(&format!("{kind}: {}", error_chain(&error))),
    );
    if never_sent {
        error.never_sent()
    } else {
        error
    }
}

/// An error and up to four of its causes, on one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    let mut depth = 0;
    while let Some(cause) = source {
        if depth >= 4 {
            break;
        }
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
        depth += 1;
    }
    text
}
