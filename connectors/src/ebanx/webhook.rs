//! EBANX notifications: a form POST that names payments and says nothing else.
//!
//! `operation=payment_status_change&notification_type=update&hash_codes=<h1>,<h2>` (the
//! type is `update`, `refund`, `chargeback` or `chargeback_credit`). The body carries no
//! status, no amount and no signature payledger can rely on, so it is never believed: each
//! hash is asked of EBANX with payledger's own integration key (`POST /ws/query`), and only
//! EBANX's answers become notifications ([`EbanxWebhookVerifier::notifications`]):
//!
//! | EBANX's answer | notification |
//! |---|---|
//! | `CO` | `Approved` |
//! | `CA` turned down (`transaction_status.code: "NOK"`) | `Declined` |
//! | any other `CA` | `Expired` |
//! | `PE` / `OP` (nothing changed: a stale or forged notification) | none |
//! | no such payment, or a payment whose `merchant_payment_code` is not a payledger payment | none |
//! | no answer (timeout, 5xx) | the whole delivery is `503`: EBANX delivers it again |
//!
//! The event id is `ebanx:<hash>:<STATUS>`, the one a sync or a create answer records for the
//! same status, so a redelivery, a refund's own notification (the payment stays `CO`) or a
//! notification after a sync appends nothing. A body is bounded: at most
//! [`HASH_CODES_MAX`] hashes, each hex of EBANX's length.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::ebanx::client::valid_hash;
use crate::ebanx::EbanxProvider;
use crate::{
    NotificationOutcome, ProviderNotification, ProviderTransaction, ProviderTransactionStatus,
    WebhookError, WebhookRequest, WebhookVerifier,
};

/// Largest notification body parsed.
pub const BODY_MAX_BYTES: usize = 8 * 1024;
/// Most hashes one notification may name (each costs a query).
pub const HASH_CODES_MAX: usize = 20;
/// Queries to EBANX in flight for one notification.
const QUERIES_IN_FLIGHT: usize = 4;
/// Bound of all the queries of one notification: EBANX waits for the answer.
const QUERIES_DEADLINE: Duration = Duration::from_secs(20);
/// Most form fields read.
const FIELDS_MAX: usize = 16;
pub const OPERATION: &str = "payment_status_change";

/// What a notification names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub notification_type: String,
    /// Distinct, in the order given.
    pub hashes: Vec<String>,
}

/// Parses an EBANX notification body: strict about what is queried, silent about fields it
/// does not know.
pub fn parse_notification(raw_body: &[u8]) -> Result<Notice, WebhookError> {
    if raw_body.len() > BODY_MAX_BYTES {
        return Err(WebhookError::TooLarge {
            max: BODY_MAX_BYTES,
        });
    }
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(raw_body)
        .map_err(|_| WebhookError::Malformed("not a form-encoded body".into()))?;
    if fields.len() > FIELDS_MAX {
        return Err(WebhookError::Malformed(format!(
            "more than {FIELDS_MAX} fields"
        )));
    }
    let field = |name: &'static str| -> Result<Option<&str>, WebhookError> {
        let mut values = fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = values.next();
        if values.next().is_some() {
            return Err(WebhookError::InvalidField {
                field: name,
                problem: "is given more than once".into(),
            });
        }
        Ok(first.map(String::as_str))
    };
    let missing = |field: &'static str| WebhookError::InvalidField {
        field,
        problem: "is missing".into(),
    };
    let operation = field("operation")?.ok_or_else(|| missing("operation"))?;
    if operation != OPERATION {
        return Err(WebhookError::UnsupportedEventType(crate::excerpt(
            operation, 32,
        )));
    }
    let notification_type =
        field("notification_type")?.ok_or_else(|| missing("notification_type"))?;
    if notification_type.is_empty()
        || notification_type.len() > 32
        || !notification_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err(WebhookError::InvalidField {
            field: "notification_type",
            problem: "is not a notification type".into(),
        });
    }
    let codes = field("hash_codes")?.ok_or_else(|| missing("hash_codes"))?;
    let mut hashes: Vec<String> = Vec::new();
    for hash in codes.split(',').map(str::trim) {
        if !valid_hash(hash) {
            return Err(WebhookError::InvalidField {
                field: "hash_codes",
                problem: "holds something that is not an EBANX payment hash".into(),
            });
        }
        let hash = hash.to_ascii_lowercase();
        if !hashes.contains(&hash) {
            if hashes.len() == HASH_CODES_MAX {
                return Err(WebhookError::InvalidField {
                    field: "hash_codes",
                    problem: format!("names more than {HASH_CODES_MAX} payments"),
                });
            }
            hashes.push(hash);
        }
    }
    Ok(Notice {
        notification_type: notification_type.to_owned(),
        hashes,
    })
}

/// The notification EBANX's own view of a payment amounts to; `None` where nothing is to be
/// appended (still open, or nothing payledger records).
pub fn notification_of(transaction: ProviderTransaction) -> Option<ProviderNotification> {
    let outcome = match &transaction.status {
        ProviderTransactionStatus::Approved => NotificationOutcome::Approved {
            amount: transaction.amount,
        },
        ProviderTransactionStatus::Declined { reason } => NotificationOutcome::Declined {
            reason: reason.clone(),
        },
        ProviderTransactionStatus::Expired => NotificationOutcome::Expired,
        ProviderTransactionStatus::Failed { reason } => NotificationOutcome::Failed {
            reason: reason.clone(),
        },
        ProviderTransactionStatus::Pending
        | ProviderTransactionStatus::Authorized
        | ProviderTransactionStatus::Voided => return None,
    };
    Some(ProviderNotification {
        provider: EbanxProvider::NAME,
        event_id: format!(
            "{}:{}:{}",
            EbanxProvider::NAME,
            transaction.id,
            transaction.status.as_str()
        ),
        payment_id: transaction.payment_id,
        provider_transaction_id: transaction.id,
        outcome,
        // Already EBANX's own answer to payledger's query.
        confirm_with_provider: false,
    })
}

/// Turns EBANX notifications into what EBANX answers about the payments they name.
#[derive(Debug, Clone)]
pub struct EbanxWebhookVerifier {
    ebanx: Arc<EbanxProvider>,
}

impl EbanxWebhookVerifier {
    pub fn new(ebanx: Arc<EbanxProvider>) -> Self {
        EbanxWebhookVerifier { ebanx }
    }
}

#[async_trait::async_trait]
impl WebhookVerifier for EbanxWebhookVerifier {
    fn provider(&self) -> &'static str {
        EbanxProvider::NAME
    }

    /// The body alone says nothing to act on: it is checked, and `notifications` asks EBANX.
    fn verify(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Option<ProviderNotification>, WebhookError> {
        parse_notification(request.body).map(|_| None)
    }

    async fn notifications(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<ProviderNotification>, WebhookError> {
        let notice = parse_notification(request.body)?;
        let queries = futures::stream::iter(notice.hashes)
            .map(|hash| {
                let ebanx = Arc::clone(&self.ebanx);
                async move { ebanx.query(super::client::Key::Hash(&hash)).await }
            })
            .buffered(QUERIES_IN_FLIGHT)
            .collect::<Vec<_>>();
        let answers = tokio::time::timeout(QUERIES_DEADLINE, queries)
            .await
            .map_err(|_| {
                WebhookError::ProviderUnavailable(format!(
                    "ebanx did not answer the queries within {} s",
                    QUERIES_DEADLINE.as_secs()
                ))
            })?;
        let mut found = Vec::new();
        for answer in answers {
            let payment = match answer {
                Ok(Some(payment)) => payment,
                // EBANX holds no such payment, or refuses to say: nothing to believe.
                Ok(None) => continue,
                Err(error) if error.outcome() == crate::CallOutcome::Refused => {
                    tracing::warn!(%error, "ebanx refused a notification's query");
                    continue;
                }
                Err(error) => return Err(WebhookError::ProviderUnavailable(error.detail)),
            };
            if payment.our_payment_id().is_none() {
                // Another integration's payment on the same EBANX account.
                continue;
            }
            let transaction = super::client::transaction_of(payment, None)
                .map_err(|error| WebhookError::ProviderUnavailable(error.detail))?;
            found.extend(notification_of(transaction));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{Currency, Money, PaymentId};
    use uuid::Uuid;

    const H1: &str = "53ad936c0dfb7b008d57bf7d396c83a28d24869949fdc84f";
    const H2: &str = "cc6d7065bd3842c9fd56f993dba4d900b428d9373878aff8";

    #[test]
    fn reads_ebanx_documented_bodies() {
        let one = parse_notification(
            format!("operation=payment_status_change&notification_type=update&hash_codes={H1}")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            one,
            Notice {
                notification_type: "update".into(),
                hashes: vec![H1.into()]
            }
        );
        let two = parse_notification(
            format!(
                "notification_type=refund&hash_codes={H1}%2C{},{H1}&operation=payment_status_change&extra=1",
                H2.to_uppercase()
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(two.notification_type, "refund");
        assert_eq!(
            two.hashes,
            vec![H1.to_owned(), H2.to_owned()],
            "distinct, lower case"
        );
    }

    #[test]
    fn refuses_bodies_that_cannot_name_payments() {
        let many = (0..=HASH_CODES_MAX)
            .map(|i| format!("{H1:.40}{i:08}"))
            .collect::<Vec<_>>()
            .join(",");
        for (body, expected) in [
            (format!("notification_type=update&hash_codes={H1}"), "operation"),
            (
                format!("operation=refund_done&notification_type=update&hash_codes={H1}"),
                "unsupported",
            ),
            ("operation=payment_status_change&notification_type=update".into(), "hash_codes"),
            (
                "operation=payment_status_change&notification_type=update&hash_codes=".into(),
                "hash_codes",
            ),
            (
                "operation=payment_status_change&notification_type=update&hash_codes=../../etc".into(),
                "hash_codes",
            ),
            (
                format!("operation=payment_status_change&notification_type=update&hash_codes={many}"),
                "more than 20",
            ),
            (
                format!("operation=payment_status_change&notification_type=Update!&hash_codes={H1}"),
                "notification_type",
            ),
            (
                format!("operation=payment_status_change&operation=payment_status_change&notification_type=update&hash_codes={H1}"),
                "more than once",
            ),
        ] {
            let err = parse_notification(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "{body}: {err}");
            assert!(!err.contains("etc"), "{err}");
        }
        assert_eq!(
            parse_notification(&vec![b'a'; BODY_MAX_BYTES + 1]),
            Err(WebhookError::TooLarge {
                max: BODY_MAX_BYTES
            })
        );
        assert!(!WebhookError::ProviderUnavailable("x".into()).is_authentication());
        assert!(WebhookError::ProviderUnavailable("x".into()).is_unavailable());
    }

    #[test]
    fn only_outcomes_become_notifications_with_the_sync_event_id() {
        let php = Money::parse("129.50", Currency::PHP).unwrap();
        let payment_id = PaymentId::from_uuid(Uuid::new_v4());
        let transaction = |status| ProviderTransaction {
            id: H1.into(),
            payment_id,
            status,
            amount: php,
            captured_amount: php,
            refunded_amount: Money::zero(Currency::PHP),
            next_action: None,
        };
        let approved = notification_of(transaction(ProviderTransactionStatus::Approved)).unwrap();
        assert_eq!(approved.event_id, format!("ebanx:{H1}:APPROVED"));
        assert_eq!(approved.payment_id, payment_id);
        assert_eq!(approved.provider_transaction_id, H1);
        assert_eq!(
            approved.outcome,
            NotificationOutcome::Approved { amount: php }
        );
        assert!(!approved.confirm_with_provider);
        let expired = notification_of(transaction(ProviderTransactionStatus::Expired)).unwrap();
        assert_eq!(expired.outcome, NotificationOutcome::Expired);
        assert_eq!(expired.event_id, format!("ebanx:{H1}:EXPIRED"));
        for nothing in [
            ProviderTransactionStatus::Pending,
            ProviderTransactionStatus::Authorized,
            ProviderTransactionStatus::Voided,
        ] {
            assert_eq!(notification_of(transaction(nothing)), None);
        }
    }
}
