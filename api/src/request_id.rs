//! `X-Request-Id`: every request gets one (the caller's when well-formed, else a new UUID),
//! answered in the same header, carried as the `request_id` field of the span every log line
//! of the request is written in, and handed to the write side so the events the request
//! appends name it in their metadata. The access log line is written here, in that span.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use tracing::Instrument;
use uuid::Uuid;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// A caller's id longer than this, or with other characters than `[A-Za-z0-9._:-]`, is
/// replaced: it goes into logs and events, so it must be short and inert.
pub const LEN_MAX: usize = 64;

fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= LEN_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn request_id(request: &ServiceRequest) -> String {
    request
        .headers()
        .get(&HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| well_formed(id))
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned)
}

pub async fn assign(
    request: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&request);
    let method = request.method().to_string();
    let path = request.path().to_owned();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let quiet = path.starts_with("/health");
    let mut response = commands::request_context::scope(id.clone(), next.call(request))
        .instrument(span.clone())
        .await?;
    // `well_formed` or a UUID: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    if !quiet {
        let _entered = span.enter();
        tracing::info!(
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::well_formed;

    #[test]
    fn ids_a_caller_may_choose() {
        assert!(well_formed("7f9c2ba4-e88f-11ee-a506-0242ac120002"));
        assert!(well_formed("checkout:42.retry_1"));
        assert!(well_formed(&"a".repeat(64)));
    }

    #[test]
    fn ids_that_are_replaced() {
        assert!(!well_formed(""));
        assert!(!well_formed(&"a".repeat(65)));
        assert!(!well_formed("has space"));
        assert!(!well_formed("line\nbreak"));
        assert!(!well_formed("<script>"));
        assert!(!well_formed("ünïcode"));
    }
}
