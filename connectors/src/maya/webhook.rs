//! Maya webhooks: authenticated by where they come from, then confirmed with Maya.
//!
//! Maya does not sign online-payment webhooks. A webhook is accepted only when the request's
//! client address (the TCP peer, or behind a trusted load balancer the client it names: the
//! API resolves it, see `api::client_ip`) is in the configured source list (`MAYA_WEBHOOK_SOURCES`: IPs and CIDR
//! ranges, IPv4 and IPv6, see [`SourceList`]), else [`WebhookError::UnknownSource`]. Even
//! then the body is not proof: every notification says `confirm_with_provider: true`, so
//! payledger fetches the payment from Maya (`GET /payments/v1/payments/{id}`) and appends
//! what *Maya* says, never what the body claims.
//!
//! The body is Maya's payment object (`crate::maya::wire::Payment`): `id` (Maya's
//! payment id, which for a checkout is its checkout id), `status`, `amount`, `currency`,
//! `requestReferenceNumber` (our payment id). Events by status:
//!
//! | status | outcome |
//! |---|---|
//! | `PAYMENT_SUCCESS` | `Approved` |
//! | `AUTHORIZED` | `Authorized` (manual capture) |
//! | `PAYMENT_FAILED` | `Declined` |
//! | `PAYMENT_EXPIRED` | `Expired` |
//! | `PAYMENT_CANCELLED` | `Failed { reason: "cancelled" }` |
//! | anything else, and the `PAYMENT_SUCCESS` of a capture payment | `Ok(None)` (acknowledged) |
//!
//! The event id is `<Maya payment id>:<status>`: Maya redelivers the same payment in the same
//! status, and a payment reaches each status at most once.

use crate::SourceList;
use crate::maya::{self, status, wire, MayaConfig, MayaProvider, CANCELLED_REASON};
use crate::ProviderConfigError;

use crate::{
    excerpt, NotificationOutcome, ProviderNotification, WebhookError, WebhookRequest,
    WebhookVerifier,
};

/// Largest webhook body parsed.
pub const BODY_MAX_BYTES: usize = 64 * 1024;
/// Longest Maya payment id accepted.
pub const ID_LEN_MAX: usize = 64;

/// Verifies Maya webhooks by source address and parses them.
#[derive(Debug, Clone)]
pub struct MayaWebhookVerifier {
    sources: SourceList,
}

impl MayaWebhookVerifier {
    pub fn new(config: &MayaConfig) -> Result<Self, ProviderConfigError> {
        let sources =
            SourceList::parse(&config.webhook_sources).map_err(|problem| ProviderConfigError {
                provider: MayaProvider::NAME,
                problem: format!("webhook_sources {problem}"),
            })?;
        Ok(Self::with_sources(sources))
    }

    pub fn with_sources(sources: SourceList) -> Self {
        MayaWebhookVerifier { sources }
    }
}

impl WebhookVerifier for MayaWebhookVerifier {
    fn provider(&self) -> &'static str {
        MayaProvider::NAME
    }

    fn verify(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Option<ProviderNotification>, WebhookError> {
        match request.peer {
            Some(peer) if self.sources.contains(peer) => parse_notification(request.body),
            _ => Err(WebhookError::UnknownSource),
        }
    }
}

/// Parses a Maya webhook body. Call it only for a request from an accepted source.
pub fn parse_notification(raw_body: &[u8]) -> Result<Option<ProviderNotification>, WebhookError> {
    if raw_body.len() > BODY_MAX_BYTES {
        return Err(WebhookError::TooLarge {
            max: BODY_MAX_BYTES,
        });
    }
    let payment: wire::Payment = serde_json::from_slice(raw_body)
        .map_err(|e| WebhookError::Malformed(describe_json_error(&e)))?;
    check_id(&payment.id)?;
    let rrn = payment.request_reference_number.as_deref().unwrap_or("");
    if maya::is_capture_reference(rrn) {
        // A capture payment: payledger recorded the capture when it made it.
        return Ok(None);
    }
    let outcome = match payment.payment_status() {
        status::PAYMENT_SUCCESS => NotificationOutcome::Approved {
            amount: amount(&payment)?,
        },
        status::AUTHORIZED => NotificationOutcome::Authorized {
            amount: amount(&payment)?,
        },
        status::PAYMENT_FAILED => NotificationOutcome::Declined {
            reason: payment.failure_reason(),
        },
        status::PAYMENT_EXPIRED => NotificationOutcome::Expired,
        status::PAYMENT_CANCELLED => NotificationOutcome::Failed {
            reason: CANCELLED_REASON.to_owned(),
        },
        _ => return Ok(None),
    };
    let payment_id = payment
        .our_payment_id()
        .ok_or_else(|| WebhookError::InvalidField {
            field: "requestReferenceNumber",
            problem: "is not a payledger payment id".into(),
        })?;
    Ok(Some(ProviderNotification {
        provider: MayaProvider::NAME,
        event_id: format!("{}:{}", payment.id, payment.payment_status()),
        payment_id,
        provider_transaction_id: payment.id,
        outcome,
        confirm_with_provider: true,
    }))
}

fn amount(payment: &wire::Payment) -> Result<domain::Money, WebhookError> {
    payment
        .money()
        .map_err(|problem| WebhookError::InvalidField {
            field: "amount",
            problem: excerpt(&format!("is {problem}"), 64),
        })
}

fn check_id(value: &str) -> Result<(), WebhookError> {
    let problem = if value.is_empty() {
        "must not be empty"
    } else if value.len() > ID_LEN_MAX {
        "is too long"
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        "contains characters that are not allowed"
    } else {
        return Ok(());
    };
    Err(WebhookError::InvalidField {
        field: "id",
        problem: problem.into(),
    })
}

/// serde_json's messages can quote the offending value; keep only the category and place.
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable body",
        Category::Syntax => "invalid JSON syntax",
        Category::Data => "missing field or wrong type",
        Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::{Currency, Money, PaymentId};
    use std::str::FromStr;

    const PAYMENT_ID: &str = "6a1f3c2e-8b4d-4e7a-9c10-5d2b7f3e1a90";
    const MAYA_ID: &str = "e3b0c442-98fc-4c14-9afb-f4c8996fb924";

    fn body(status: &str, amount: &str, rrn: &str) -> String {
        format!(
            r#"{{"id":"{MAYA_ID}","isPaid":true,"status":"{status}","amount":{amount},"currency":"PHP","canVoid":true,"canRefund":false,"canCapture":false,"createdAt":"2025-01-01T00:00:00.000Z","updatedAt":"2025-01-01T00:00:01.000Z","description":"Charge","fundSource":{{"type":"card","details":{{"last4":"1111"}}}},"receiptNumber":"123","requestReferenceNumber":"{rrn}"}}"#
        )
    }

    fn request<'a>(body: &'a [u8], peer: Option<&str>) -> WebhookRequest<'a> {
        WebhookRequest {
            headers: &[],
            body,
            peer: peer.map(|p| p.parse().unwrap()),
            received_at: Utc::now(),
        }
    }

    fn verifier(sources: &str) -> MayaWebhookVerifier {
        MayaWebhookVerifier::with_sources(SourceList::parse(sources).unwrap())
    }

    #[test]
    fn source_list_matches_hosts_and_ranges_of_both_families() {
        let list = SourceList::parse(
            " 18.138.50.235 ,3.1.207.200,10.0.0.0/8,, 2001:db8::/32, ::1, 192.168.1.0/24",
        )
        .unwrap();
        assert_eq!(list.len(), 6);
        let has = |ip: &str| list.contains(ip.parse().unwrap());
        assert!(has("18.138.50.235"));
        assert!(!has("18.138.50.236"));
        assert!(has("10.255.1.2"));
        assert!(!has("11.0.0.1"));
        assert!(has("192.168.1.77"));
        assert!(!has("192.168.2.1"));
        assert!(has("2001:db8:ffff::1"));
        assert!(!has("2001:db9::1"));
        assert!(has("::1"));
        assert!(!has("::2"));
        assert!(
            has("::ffff:10.1.2.3"),
            "IPv4-mapped peer matches the IPv4 range"
        );
        assert!(!has("127.0.0.1"));
        assert!(!list.too_broad());
        assert!(!list.only_loopback());
        assert!(SourceList::parse("127.0.0.1, ::1, 127.0.0.0/8")
            .unwrap()
            .only_loopback());
        assert!(!SourceList::parse("127.0.0.1, 10.0.0.1")
            .unwrap()
            .only_loopback());
        assert!(!SourceList::parse("").unwrap().only_loopback());

        let mapped = SourceList::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains("10.9.9.9".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));

        let hosts = SourceList::parse("1.2.3.4/32,::/0").unwrap();
        assert!(hosts.too_broad());
        for split in [
            "0.0.0.0/1,128.0.0.0/1",
            "0.0.0.0/2,64.0.0.0/2,128.0.0.0/2,192.0.0.0/2",
            "::/1,8000::/1",
            "10.0.0.0/8,11.0.0.0/8,12.0.0.0/8",
        ] {
            assert!(SourceList::parse(split).unwrap().too_broad(), "{split}");
        }
        for narrow in ["10.0.0.0/8,192.168.0.0/16", "fc00::/7", "203.0.113.0/24,2001:db8::/32"] {
            assert!(!SourceList::parse(narrow).unwrap().too_broad(), "{narrow}");
        }
        assert!(SourceList::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(SourceList::parse("").unwrap().is_empty());
        assert!(!SourceList::parse(" , ")
            .unwrap()
            .contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn source_list_refuses_bad_entries_without_echoing_them() {
        for bad in [
            "1.2.3",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "1.2.3.4/+8",
            "1.2.3.4/0008",
            "10.0.0.1/8",
            "::1/129",
            "fe80::1%eth0",
            "2001:db8::1/32",
            "example.com",
            "1.2.3.4 5.6.7.8",
        ] {
            let err = SourceList::parse(&format!("127.0.0.1, {bad}")).unwrap_err();
            assert!(err.starts_with("entry 2 "), "{bad}: {err}");
            assert!(!err.contains(bad), "{err}");
        }
        let many = vec!["1.1.1.1"; SourceList::ENTRIES_MAX + 1].join(",");
        assert!(SourceList::parse(&many).is_err());
    }

    #[test]
    fn a_body_claiming_success_from_an_unknown_address_is_refused() {
        let raw = body("PAYMENT_SUCCESS", r#""129.50""#, PAYMENT_ID);
        let v = verifier("10.9.9.9");
        for peer in [Some("127.0.0.1"), Some("10.9.9.8"), Some("::1"), None] {
            assert_eq!(
                v.verify(&request(raw.as_bytes(), peer)),
                Err(WebhookError::UnknownSource),
                "{peer:?}"
            );
        }
        assert!(WebhookError::UnknownSource.is_authentication());
        // Even an unparseable body is refused for its source first.
        assert_eq!(
            v.verify(&request(b"not json", Some("127.0.0.1"))),
            Err(WebhookError::UnknownSource)
        );
    }

    #[test]
    fn an_accepted_source_still_needs_confirmation_from_maya() {
        let raw = body("PAYMENT_SUCCESS", r#""129.50""#, PAYMENT_ID);
        let n = verifier("127.0.0.1")
            .verify(&request(raw.as_bytes(), Some("127.0.0.1")))
            .unwrap()
            .unwrap();
        assert_eq!(n.provider, "maya");
        assert!(n.confirm_with_provider);
        assert_eq!(n.payment_id, PaymentId::from_str(PAYMENT_ID).unwrap());
        assert_eq!(n.provider_transaction_id, MAYA_ID);
        assert_eq!(n.event_id, format!("{MAYA_ID}:PAYMENT_SUCCESS"));
        assert_eq!(
            n.outcome,
            NotificationOutcome::Approved {
                amount: Money::parse("129.50", Currency::PHP).unwrap()
            }
        );
        // A redelivery carries the same event id.
        let again = parse_notification(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(again.event_id, n.event_id);
    }

    #[test]
    fn maps_every_maya_event() {
        let php = |s| Money::parse(s, Currency::PHP).unwrap();
        let outcome = |status: &str| {
            parse_notification(body(status, "100", PAYMENT_ID).as_bytes())
                .unwrap()
                .map(|n| n.outcome)
        };
        assert_eq!(
            outcome("AUTHORIZED"),
            Some(NotificationOutcome::Authorized { amount: php("100") })
        );
        assert_eq!(
            outcome("PAYMENT_FAILED"),
            Some(NotificationOutcome::Declined {
                reason: "payment_failed".into()
            })
        );
        assert_eq!(
            outcome("PAYMENT_EXPIRED"),
            Some(NotificationOutcome::Expired)
        );
        assert_eq!(
            outcome("PAYMENT_CANCELLED"),
            Some(NotificationOutcome::Failed {
                reason: "cancelled".into()
            })
        );
        for ignored in [
            "CAPTURED",
            "DONE",
            "REFUNDED",
            "VOIDED",
            "PENDING_TOKEN",
            "NEW_THING",
        ] {
            assert_eq!(outcome(ignored), None, "{ignored}");
        }
        let failed = body("PAYMENT_FAILED", "100", PAYMENT_ID).replace(
            r#""receiptNumber""#,
            r#""errorCode":"PY0061","receiptNumber""#,
        );
        assert_eq!(
            parse_notification(failed.as_bytes())
                .unwrap()
                .unwrap()
                .outcome,
            NotificationOutcome::Declined {
                reason: "maya_PY0061".into()
            }
        );
    }

    #[test]
    fn reads_the_older_checkout_shaped_body_by_its_payment_status() {
        let raw = format!(
            r#"{{"id":"{MAYA_ID}","items":[{{"name":"order-1","quantity":"1","totalAmount":{{"value":"129.50"}}}}],"requestReferenceNumber":"{PAYMENT_ID}","receiptNumber":"abc","status":"COMPLETED","paymentStatus":"PAYMENT_SUCCESS","paymentScheme":"master-card","totalAmount":{{"amount":"129.50","currency":"PHP","details":{{"subtotal":"129.50"}}}}}}"#
        );
        let n = parse_notification(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(n.event_id, format!("{MAYA_ID}:PAYMENT_SUCCESS"));
        assert_eq!(
            n.outcome,
            NotificationOutcome::Approved {
                amount: Money::parse("129.50", Currency::PHP).unwrap()
            }
        );
        // Without any status there is nothing to act on.
        let bare = body("PAYMENT_SUCCESS", "100", PAYMENT_ID)
            .replace(r#""status":"PAYMENT_SUCCESS","#, "");
        assert_eq!(parse_notification(bare.as_bytes()), Ok(None));
    }

    #[test]
    fn a_capture_payment_is_acknowledged_not_acted_on() {
        let rrn = maya::capture_reference(PaymentId::from_str(PAYMENT_ID).unwrap());
        let raw = body("PAYMENT_SUCCESS", "100", &rrn);
        assert_eq!(parse_notification(raw.as_bytes()), Ok(None));
    }

    #[test]
    fn refuses_bodies_payledger_cannot_rely_on() {
        let bad = [
            body("PAYMENT_SUCCESS", "100", "order-17"),
            body("PAYMENT_SUCCESS", r#""1.001""#, PAYMENT_ID),
            body("PAYMENT_SUCCESS", "-5", PAYMENT_ID),
            body("PAYMENT_SUCCESS", "1e3", PAYMENT_ID),
            body("PAYMENT_SUCCESS", "0", PAYMENT_ID),
            body("AUTHORIZED", "100", PAYMENT_ID).replace("PHP", "XXX"),
            body("PAYMENT_SUCCESS", "100", PAYMENT_ID).replace(MAYA_ID, "a/../b"),
            body("PAYMENT_SUCCESS", "100", PAYMENT_ID).replace(r#""amount":100,"#, ""),
            "[]".into(),
            "not json".into(),
        ];
        for raw in bad {
            assert!(parse_notification(raw.as_bytes()).is_err(), "{raw}");
        }
        assert_eq!(
            parse_notification(&vec![b' '; BODY_MAX_BYTES + 1]),
            Err(WebhookError::TooLarge {
                max: BODY_MAX_BYTES
            })
        );
        let err =
            parse_notification(body("PAYMENT_SUCCESS", "12345678.901", PAYMENT_ID).as_bytes())
                .unwrap_err()
                .to_string();
        assert!(!err.contains("12345678"), "{err}");
    }
}
