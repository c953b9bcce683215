//! Errors as `application/problem+json` (RFC 9457): a type, a title, the status, a detail a
//! person can act on, and `errors[]` for field problems. Never a stack trace or a secret.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use commands::payments::CommandError;
use connectors::CallOutcome;
use domain::PaymentError;
use serde::Serialize;

/// One field's problem: `field` names it as sent (`payment_method.token`, `amount`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl ToString) -> Self {
        Self {
            field: field.to_owned(),
            message: message.to_string(),
        }
    }
}

/// The parsed field, or its error named after `field` in `errors`: a request's fields are
/// all parsed, so the caller hears about every bad one at once.
pub(crate) fn checked<T, E: std::fmt::Display>(
    errors: &mut Vec<FieldError>,
    field: &str,
    parsed: Result<T, E>,
) -> Option<T> {
    parsed
        .map_err(|e| errors.push(FieldError::new(field, e)))
        .ok()
}

/// Where every problem type's URI starts.
const PROBLEM_TYPE_BASE: &str = "https://payledger.dev/problems/";

/// Declares every problem type the API answers, by its slug: the one list the handlers take
/// their types from and the contract enumerates.
macro_rules! problem_types {
    ($($variant:ident => $slug:literal,)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ProblemType {
            $($variant,)+
        }

        impl ProblemType {
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)+];

            pub fn slug(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $slug,)+
                }
            }
        }
    };
}

problem_types! {
    AmountNotAllowed => "amount-not-allowed",
    BadRequest => "bad-request",
    BodyTooLarge => "body-too-large",
    CardNumberRefused => "card-number-refused",
    ConcurrentUpdate => "concurrent-update",
    CustomerExists => "customer-exists",
    Forbidden => "forbidden",
    IdempotencyKeyReused => "idempotency-key-reused",
    Internal => "internal",
    InvalidRequest => "invalid-request",
    InvalidState => "invalid-state",
    InvalidWebhook => "invalid-webhook",
    KeyNotActive => "key-not-active",
    MethodNotAllowed => "method-not-allowed",
    NoProvider => "no-provider",
    NotFound => "not-found",
    NotSupportedByProvider => "not-supported-by-provider",
    PaymentMethodAwaitingVerification => "payment-method-awaiting-verification",
    ProviderError => "provider-error",
    ProviderOutcomeUnknown => "provider-outcome-unknown",
    ProviderRefused => "provider-refused",
    RateLimited => "rate-limited",
    ReferenceTaken => "reference-taken",
    RefundRefused => "refund-refused",
    TooManyEndpoints => "too-many-endpoints",
    TooManyMethods => "too-many-methods",
    TooManyWaitingReads => "too-many-waiting-reads",
    Unauthorized => "unauthorized",
    Unavailable => "unavailable",
    UnsupportedMediaType => "unsupported-media-type",
    WrongProvider => "wrong-provider",
}

impl ProblemType {
    /// The problem's `type`.
    pub fn uri(self) -> String {
        format!("{PROBLEM_TYPE_BASE}{}", self.slug())
    }
}

/// The contract's schema of a problem's `type`: one of the URIs above.
fn problem_type_schema() -> utoipa::openapi::Object {
    let uris: Vec<String> = ProblemType::ALL.iter().map(|kind| kind.uri()).collect();
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::Custom(
            "uri".to_owned(),
        )))
        .enum_values(Some(uris))
        .description(Some(
            "What went wrong, as a URI: one of the problem types the API answers.",
        ))
        .build()
}

/// An RFC 9457 problem: `type` identifies it, `detail` says what to do.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "https://payledger.dev/problems/invalid-request",
    "title": "The request is not valid",
    "status": 422,
    "detail": "amount: must be a decimal string such as 10.50",
    "errors": [{"field": "amount", "message": "must be a decimal string such as 10.50"}]
}))]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(schema_with = problem_type_schema)]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: ProblemType,
        title: &str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.uri(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ProblemType::BadRequest,
            "Bad request",
            detail,
        )
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::InvalidRequest,
            "The request is not valid",
            detail,
        )
        .with_errors(errors)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ProblemType::NotFound,
            "Not found",
            detail,
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ProblemType::Unauthorized,
            "Unauthorized",
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ProblemType::Forbidden,
            "Forbidden",
            detail,
        )
    }

    /// A raw card number where `field` is: refused wherever it comes, never echoed.
    pub fn card_number_refused(field: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::CardNumberRefused,
            "Card numbers are not accepted",
            "a raw card number is never accepted: tokenize the card with the provider and send its token",
        )
        .with_errors(vec![FieldError::new(field, "holds a card number")])
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::Unavailable,
            "Service unavailable",
            detail,
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("application/problem+json")
            .json(self)
    }
}

/// A refused or failed command as its problem: one mapping, so every handler agrees.
impl From<CommandError> for Problem {
    fn from(error: CommandError) -> Self {
        match &error {
            CommandError::Rejected(e) => match e {
                PaymentError::NotFound | PaymentError::RefundNotFound => {
                    Problem::not_found("no such payment")
                }
                PaymentError::IdempotencyMismatch => Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ProblemType::IdempotencyKeyReused,
                    "Idempotency-Key reused",
                    e.to_string(),
                ),
                PaymentError::InvalidTransition { .. } => Problem::new(
                    StatusCode::CONFLICT,
                    ProblemType::InvalidState,
                    "Not allowed in the payment's state",
                    e.to_string(),
                ),
                PaymentError::CurrencyMismatch { .. }
                | PaymentError::CaptureExceedsAuthorized { .. }
                | PaymentError::RefundExceedsCaptured { .. }
                | PaymentError::ProviderAmountMismatch { .. }
                | PaymentError::Money(_) => Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ProblemType::AmountNotAllowed,
                    "Amount not allowed",
                    e.to_string(),
                ),
            },
            CommandError::ReferenceTaken => Problem::new(
                StatusCode::CONFLICT,
                ProblemType::ReferenceTaken,
                "Reference already used",
                "this merchant already has a payment with this reference",
            ),
            CommandError::Conflict => Problem::new(
                StatusCode::CONFLICT,
                ProblemType::ConcurrentUpdate,
                "Concurrent update",
                "the payment was changed concurrently; retry the request",
            ),
            CommandError::NoProvider { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::NoProvider,
                "No provider takes this payment",
                error.to_string(),
            ),
            CommandError::ProvidersUnavailable => Problem::unavailable(error.to_string()),
            CommandError::Unsupported { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::NotSupportedByProvider,
                "Not supported by the provider",
                error.to_string(),
            ),
            // The provider answered no: a retry would get the same answer.
            CommandError::Provider(e) if !e.is_retryable() => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ProblemType::ProviderRefused,
                "The payment provider refused the request",
                e.to_string(),
            ),
            // The provider may have acted: the intent stays recorded and is resolved with the
            // provider; a retry with the same Idempotency-Key answers its outcome.
            CommandError::Provider(e) if e.outcome() == CallOutcome::Unknown => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                ProblemType::ProviderOutcomeUnknown,
                "The payment provider's answer was lost",
                format!("{e}; the request is recorded and will be resolved with the provider: retry with the same Idempotency-Key"),
            ),
            CommandError::Provider(e) => Problem::new(
                StatusCode::BAD_GATEWAY,
                ProblemType::ProviderError,
                "The payment provider did not accept the request",
                e.to_string(),
            ),
            CommandError::Store(detail) => {
                tracing::error!(%detail, "event store error");
                Problem::unavailable("the event store is unavailable; retry later")
            }
        }
    }
}

/// Turns a body that is not the JSON we take into a problem: broken JSON is a `400`, JSON of
/// the wrong shape (missing or unknown field, a number where a string belongs) a `422`.
pub fn json_problem(error: &serde_json::Error) -> Problem {
    use serde_json::error::Category;
    let message = scrub_values(&error.to_string());
    match error.classify() {
        Category::Data => Problem::invalid(vec![FieldError {
            field: "body".into(),
            message,
        }]),
        Category::Syntax | Category::Eof | Category::Io => {
            Problem::bad_request(format!("the body is not valid JSON: {message}"))
        }
    }
}

/// serde quotes the offending *value* in type errors (`invalid type: string "tok_..."`):
/// that value may be a card token or a number, so it never goes back out. Field names in
/// `unknown field` / `missing field` messages stay: they tell the caller what to fix.
fn scrub_values(message: &str) -> String {
    let is_value_error = message.starts_with("invalid type")
        || message.starts_with("invalid value")
        || message.starts_with("invalid length");
    if !is_value_error {
        return message.to_owned();
    }
    let Some((head, tail)) = message.split_once(", expected") else {
        return "invalid value".to_owned();
    };
    let kind: String = head
        .chars()
        .take_while(|c| *c != '"' && *c != '`')
        .collect();
    let kind = kind.trim().trim_end_matches(':').trim();
    format!("{kind}, expected{tail}")
}

#[cfg(test)]
mod tests {
    use super::scrub_values;

    #[test]
    fn type_errors_lose_the_value_and_keep_the_expectation() {
        assert_eq!(
            scrub_values(
                r#"invalid type: string "tok_live_123", expected struct X at line 1 column 9"#
            ),
            "invalid type: string, expected struct X at line 1 column 9"
        );
        assert_eq!(
            scrub_values(
                "invalid type: integer `4111111111111111`, expected a string at line 1 column 98"
            ),
            "invalid type: integer, expected a string at line 1 column 98"
        );
        assert_eq!(
            scrub_values("unknown field `cvv`, expected `type` or `token`"),
            "unknown field `cvv`, expected `type` or `token`"
        );
    }
}
