//! The `customer` object of `POST /v1/payments`: the payer's details that some providers ask
//! for (PayU: name, phone, document, and the IP address, browser and device session the
//! customer pays from). Every field is optional; each one given parses into its domain type,
//! so what reaches a provider is well-formed. Personal data: it goes to the provider call only.

use std::net::IpAddr;

use connectors::{Customer, IpAddress};
use domain::{DeviceSessionId, DocumentNumber, FullName, Phone, UserAgent};
use secrecy::SecretString;
use serde::Deserialize;

use crate::problem::{checked, FieldError};

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerRequest {
    #[serde(default)]
    #[schema(max_length = 150)]
    full_name: Option<String>,
    /// International format, e.g. `+573001234567`.
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    #[schema(max_length = 20)]
    document_number: Option<String>,
    /// The address the customer pays from (IPv4 or IPv6).
    #[serde(default)]
    ip_address: Option<String>,
    #[serde(default)]
    #[schema(max_length = 512)]
    user_agent: Option<String>,
    /// PayU's device fingerprint session.
    #[serde(default)]
    #[schema(max_length = 255)]
    device_session_id: Option<String>,
}

/// `customer` of a payment: a customer's id (`/v1/customers`), whose saved default method
/// pays when the request names no method, or the payer's details.
#[derive(Debug)]
pub(crate) enum CustomerField {
    Id(String),
    Details(CustomerRequest),
}

impl<'de> Deserialize<'de> for CustomerField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(id) => Ok(CustomerField::Id(id)),
            other => CustomerRequest::deserialize(other)
                .map(CustomerField::Details)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// The contract's shape of `customer`: a customer id, or the payer's details.
pub(crate) fn customer_field_schema() -> utoipa::openapi::schema::OneOfBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    use utoipa::openapi::{KnownFormat, SchemaFormat};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                .description(Some("A customer's id: pays with their default saved method when no payment_method is given")),
        )
        .item(<CustomerRequest as utoipa::PartialSchema>::schema())
}

/// The field parsed when given; its error (named `customer.<name>`) in `errors` otherwise.
fn optional<T, E: std::fmt::Display>(
    errors: &mut Vec<FieldError>,
    name: &str,
    value: Option<String>,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> Option<T> {
    value.and_then(|v| checked(errors, &format!("customer.{name}"), parse(v)))
}

impl CustomerRequest {
    /// The customer, or one error per bad field (named `customer.<field>`) in `errors`.
    pub(crate) fn parse(self, errors: &mut Vec<FieldError>) -> Customer {
        let full_name = optional(errors, "full_name", self.full_name, FullName::try_from);
        let phone = optional(errors, "phone", self.phone, Phone::try_from);
        let document_number = optional(
            errors,
            "document_number",
            self.document_number,
            DocumentNumber::try_from,
        );
        let ip_address = optional(errors, "ip_address", self.ip_address, |v| {
            v.parse::<IpAddr>()
                .map_err(|_| "must be an IPv4 or IPv6 address")
        });
        let user_agent = optional(errors, "user_agent", self.user_agent, UserAgent::try_from);
        let device_session_id = optional(
            errors,
            "device_session_id",
            self.device_session_id,
            DeviceSessionId::try_from,
        );
        Customer {
            full_name: full_name.map(|v| SecretString::from(v.into_string())),
            phone: phone.map(|v| SecretString::from(v.into_string())),
            document_number: document_number.map(|v| SecretString::from(v.into_string())),
            ip_address: ip_address.map(|ip| IpAddress(ip).into()),
            user_agent: user_agent.map(|v| SecretString::from(v.into_string())),
            device_session_id: device_session_id.map(|v| SecretString::from(v.into_string())),
        }
    }
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
        let long_name = "a".repeat(FullName::CHARS_MAX + 1);
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
