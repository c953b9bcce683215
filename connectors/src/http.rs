//! What every provider's HTTP client does the same way: read a bounded body, and turn a
//! transport failure into a `ProviderError` whose detail never carries a secret.

use std::time::Duration;

use domain::ProviderFailureKind;

use crate::ProviderError;

/// The longest timeout an adapter may be configured with.
pub const TIMEOUT_MS_MAX: u64 = 120_000;

/// The client an adapter calls its provider with: `timeout_ms` bounds the whole request and
/// the connect; redirects are never followed (a provider answers, it does not send us on).
pub(crate) fn provider_client(timeout_ms: u64) -> Result<reqwest::Client, &'static str> {
    if timeout_ms == 0 || timeout_ms > TIMEOUT_MS_MAX {
        return Err("timeout_ms must be between 1 and 120000");
    }
    let timeout = Duration::from_millis(timeout_ms);
    reqwest::Client::builder()
        .pool_idle_timeout(crate::POOL_IDLE_TIMEOUT)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("payledger/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|_| "cannot build the HTTP client")
}

/// Reads at most `max_bytes` of `response`; more is the provider's error, not ours to buffer.
pub(crate) async fn read_body(
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
pub(crate) fn transport_error(
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
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

/// `text` with every non-empty secret replaced by `<redacted>`, whatever a library or a
/// provider echoed back.
pub(crate) fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() {
            text = text.replace(secret, "<redacted>");
        }
    }
    text
}

/// Provider-supplied text fit for an error detail or a decline reason: at most `max_chars`
/// characters, control characters replaced (so a hostile body cannot inject log lines),
/// accents kept (Wompi and PayU write Spanish).
pub fn sanitize(text: &str, max_chars: usize) -> String {
    text.chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// [`sanitize`], marked with `…` when it was cut.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut out = sanitize(text, max_chars);
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

/// A setting as the environment gives it, trimmed; blank counts as unset.
pub(crate) fn setting(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// An id fit for a URL path segment: 1 to `len_max` letters, digits, `_` and `-`.
pub(crate) fn path_safe_id(id: &str, len_max: usize) -> bool {
    !id.is_empty()
        && id.len() <= len_max
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A provider's JSON answer as `T`; a body of another shape is the provider's fault, told by
/// place only (serde's message could quote a value).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    label: &str,
    body: &[u8],
) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::server_error(format!(
            "malformed {label} response (line {} column {})",
            e.line(),
            e.column()
        ))
    })
}

/// A provider's error body in one bounded line: `describe` reads the provider's own error
/// envelope (`None`: nothing useful in it); an empty or unrecognised body says just that.
pub(crate) fn error_summary<T: serde::de::DeserializeOwned>(
    body: &[u8],
    describe: impl FnOnce(T) -> Option<String>,
) -> String {
    match serde_json::from_slice::<T>(body).ok().and_then(describe) {
        Some(summary) => summary,
        None if body.is_empty() => "empty body".to_owned(),
        None => "unrecognized error body".to_owned(),
    }
}

/// `Basic base64("<key>:")` (a provider key as the user name, no password), marked sensitive
/// so it never shows in debug output. `None` for a key that cannot be a Basic user name
/// (empty, not printable ASCII, or with a `:`).
pub(crate) fn basic_auth(key: &str) -> Option<reqwest::header::HeaderValue> {
    use base64::Engine as _;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return None;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The longest address a provider may send the customer to.
const REDIRECT_URL_LEN_MAX: usize = 2_048;

/// An address a provider sends the customer to: an http(s) URL of bounded length.
pub(crate) fn valid_redirect_url(url: &str) -> bool {
    url.len() <= REDIRECT_URL_LEN_MAX
        && reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_text_is_bounded_and_has_no_control_characters() {
        assert_eq!(sanitize("Tarjeta\nrechazada ñ", 11), "Tarjeta?rec");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(
            scrub("key sk_1 and sk_1", ["sk_1", ""]),
            "key <redacted> and <redacted>"
        );
    }
}
