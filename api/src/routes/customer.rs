//! The `customer` object of `POST /v1/payments`: the payer's details that some providers ask
//! for (PayU: name, phone, document, and the IP address, browser and device session the
//! customer pays from). Every field is optional; each one given is checked here, so what
//! reaches a provider is well-formed. Personal data: it goes to the provider call only.

use std::net::IpAddr;

use connectors::{Customer, IpAddress};
use secrecy::SecretString;
use serde::Deserialize;

use crate::problem::FieldError;

const FULL_NAME_CHARS_MAX: usize = 150;
/// E.164: at most 15 digits; 7 is the shortest national number in the markets served.
const PHONE_DIGITS_MIN: usize = 7;
const PHONE_DIGITS_MAX: usize = 15;
const DOCUMENT_LEN_MAX: usize = 20;
const USER_AGENT_LEN_MAX: usize = 512;
const DEVICE_SESSION_ID_LEN_MAX: usize = 255;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerRequest {
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    document_number: Option<String>,
    #[serde(default)]
    ip_address: Option<String>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    device_session_id: Option<String>,
}

impl CustomerRequest {
    /// The customer, or one error per bad field (named `customer.<field>`) in `errors`.
    pub(crate) fn parse(self, errors: &mut Vec<FieldError>) -> Customer {
        let mut check = |name: &str, value: Option<String>, ok: fn(&str) -> bool, rule: &str| {
            value.filter(|v| {
                let good = ok(v);
                if !good {
                    errors.push(FieldError {
                        field: format!("customer.{name}"),
                        message: rule.to_owned(),
                    });
                }
                good
            })
        };
        let full_name = check(
            "full_name",
            self.full_name,
            full_name_ok,
            &format!("must be 1 to {FULL_NAME_CHARS_MAX} characters, not blank, without control characters"),
        );
        let phone = check(
            "phone",
            self.phone,
            phone_ok,
            &format!("must be {PHONE_DIGITS_MIN} to {PHONE_DIGITS_MAX} digits, optionally after a leading +"),
        );
        let document_number = check(
            "document_number",
            self.document_number,
            document_ok,
            &format!("must be 1 to {DOCUMENT_LEN_MAX} letters, digits or hyphens"),
        );
        let ip_address = check(
            "ip_address",
            self.ip_address,
            |v| v.parse::<IpAddr>().is_ok(),
            "must be an IPv4 or IPv6 address",
        )
        .and_then(|v| v.parse::<IpAddr>().ok())
        .map(|ip| IpAddress(ip).into());
        let user_agent = check(
            "user_agent",
            self.user_agent,
            |v| printable_ascii(v, USER_AGENT_LEN_MAX, true),
            &format!("must be 1 to {USER_AGENT_LEN_MAX} printable ASCII characters"),
        );
        let device_session_id = check(
            "device_session_id",
            self.device_session_id,
            |v| printable_ascii(v, DEVICE_SESSION_ID_LEN_MAX, false),
            &format!("must be 1 to {DEVICE_SESSION_ID_LEN_MAX} printable ASCII characters without spaces"),
        );
        Customer {
            full_name: full_name.map(SecretString::from),
            phone: phone.map(SecretString::from),
            document_number: document_number.map(SecretString::from),
            ip_address,
            user_agent: user_agent.map(SecretString::from),
            device_session_id: device_session_id.map(SecretString::from),
        }
    }
}

fn full_name_ok(v: &str) -> bool {
    let chars = v.chars().count();
    chars <= FULL_NAME_CHARS_MAX && !v.trim().is_empty() && !v.chars().any(char::is_control)
}

fn phone_ok(v: &str) -> bool {
    let digits = v.strip_prefix('+').unwrap_or(v);
    (PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
}

fn document_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= DOCUMENT_LEN_MAX
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn printable_ascii(v: &str, len_max: usize, spaces: bool) -> bool {
    !v.is_empty()
        && v.len() <= len_max
        && v.bytes()
            .all(|b| b.is_ascii_graphic() || (spaces && b == b' '))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn text(value: &Option<SecretString>) -> Option<&str> {
        value.as_ref().map(|v| v.expose_secret())
    }

    fn parse(json: serde_json::Value) -> (Customer, Vec<String>) {
        let request: CustomerRequest = serde_json::from_value(json).unwrap();
        let mut errors = Vec::new();
        let customer = request.parse(&mut errors);
        (customer, errors.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn good_fields_are_kept_as_given() {
        let (customer, errors) = parse(serde_json::json!({
            "full_name": "José Ñáñez",
            "phone": "+573001234567",
            "document_number": "1999888777",
            "ip_address": "2001:db8::7",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "device_session_id": "vghs6tvkcle931686k1900o6e1",
        }));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(text(&customer.full_name), Some("José Ñáñez"));
        assert_eq!(text(&customer.phone), Some("+573001234567"));
        assert_eq!(
            customer.ip_address.map(|ip| ip.expose_secret().0),
            Some("2001:db8::7".parse().unwrap())
        );
        assert_eq!(
            text(&customer.device_session_id),
            Some("vghs6tvkcle931686k1900o6e1")
        );
        assert!(parse(serde_json::json!({})).0.is_empty());
    }

    #[test]
    fn every_bad_field_is_named_and_dropped() {
        let (customer, errors) = parse(serde_json::json!({
            "full_name": "  ",
            "phone": "300-123-4567",
            "document_number": "1999 888",
            "ip_address": "300.1.1.1",
            "user_agent": "tab\there",
            "device_session_id": "has space",
        }));
        assert_eq!(
            errors,
            [
                "customer.full_name",
                "customer.phone",
                "customer.document_number",
                "customer.ip_address",
                "customer.user_agent",
                "customer.device_session_id"
            ]
        );
        assert!(customer.is_empty());
        let long_name = "a".repeat(FULL_NAME_CHARS_MAX + 1);
        assert_eq!(
            parse(serde_json::json!({ "full_name": long_name, "phone": "+123456" })).1,
            ["customer.full_name", "customer.phone"]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let parsed = serde_json::from_value::<CustomerRequest>(serde_json::json!({
            "name": "Ana"
        }));
        assert!(parsed.is_err());
    }
}
