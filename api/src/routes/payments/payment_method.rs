//! The `payment_method` object of `POST /v1/payments`: its `type` and the fields that type
//! takes, parsed into what the provider call needs.

use connectors::PaymentMethodDetails;
use domain::{
    CardToken, MethodDetail, PaymentDescription, PaymentMethodType, PrintableTextError,
    PseUserType, PseUserTypeError,
};
use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};

use crate::openapi::one_of_texts;
use crate::problem::checked;
use crate::problem::FieldError;

/// Each method type takes its own fields; a field of another type is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PaymentMethodRequest {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    financial_institution_code: Option<String>,
    #[serde(default)]
    user_type: Option<u8>,
    #[serde(default)]
    user_legal_id_type: Option<String>,
    #[serde(default)]
    user_legal_id: Option<String>,
    /// What the customer's bank or wallet shows them (the Wompi rails).
    #[serde(default)]
    payment_description: Option<String>,
    /// A saved method's id, for `SAVED`.
    #[serde(default)]
    id: Option<String>,
}

/// `type` of a method saved for a customer (`/v1/customers/{id}/payment-methods`).
pub(super) const SAVED: &str = "SAVED";

/// What the request chose to pay with.
pub(super) enum Chosen {
    Details(PaymentMethodDetails),
    /// A saved method, by id; `None`: the customer's default.
    Saved(Option<domain::SavedMethodId>),
}

/// The contract's shape of `payment_method`: one object per `type`, each with exactly the
/// fields `parse` takes for it.
pub(super) fn schema() -> OneOfBuilder {
    let text = |len_max: usize| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(len_max))
    };
    let detail = || text(MethodDetail::LEN_MAX);
    let user_type = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .enum_values(Some([0, 1]))
            .description(Some("0: a person, 1: a company"))
    };
    let description = |len_max: usize| {
        text(len_max).description(Some(
            "What the customer's bank or wallet shows them: no control characters, no single \
             quotes",
        ))
    };
    let variants = PaymentMethodType::ALL.map(|kind| {
        let object = ObjectBuilder::new()
            .property("type", one_of_texts([kind.as_str()]))
            .required("type")
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));
        match kind {
            PaymentMethodType::Card => object
                .property(
                    "token",
                    text(CardToken::LEN_MAX).description(Some(
                        "The provider's card token (the sandbox: `tok_sandbox_approved`, `tok_sandbox_declined`)",
                    )),
                )
                .required("token"),
            PaymentMethodType::Nequi => object
                .property("phone_number", detail().description(Some("The Nequi account's phone")))
                .required("phone_number"),
            PaymentMethodType::Pse => object
                .property(
                    "financial_institution_code",
                    detail().description(Some("The bank's code from `GET /v1/pse/banks`")),
                )
                .property("user_type", user_type())
                .property("user_legal_id_type", detail().examples(["CC"]))
                .property("user_legal_id", detail())
                .required("financial_institution_code")
                .required("user_type")
                .required("user_legal_id_type")
                .required("user_legal_id"),
            PaymentMethodType::BancolombiaTransfer => object
                .property(
                    "user_type",
                    user_type().description(Some(
                        "0: a person (Wompi's Bancolombia button takes persons only), 1: a company",
                    )),
                )
                .property("payment_description", description(PaymentDescription::LEN_MAX))
                .required("user_type")
                .required("payment_description"),
            PaymentMethodType::BancolombiaQr => object
                .property("payment_description", description(PaymentDescription::LEN_MAX)),
            PaymentMethodType::Daviplata => object
                .property("user_legal_id_type", detail().examples(["CC"]))
                .property(
                    "user_legal_id",
                    detail().description(Some("The wallet holder's document number")),
                )
                .property(
                    "payment_description",
                    description(PaymentDescription::SHORT_LEN_MAX),
                )
                .required("user_legal_id_type")
                .required("user_legal_id"),
            PaymentMethodType::Efecty | PaymentMethodType::Gcash | PaymentMethodType::Maya => object,
        }
        .build()
    });
    let saved = ObjectBuilder::new()
        .property("type", one_of_texts([SAVED]))
        .required("type")
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Uuid,
                )))
                .description(Some(
                    "A method saved for a customer: its provider charges its source",
                )),
        )
        .required("id")
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .build();
    variants
        .into_iter()
        .chain([saved])
        .fold(OneOfBuilder::new(), |one_of, variant| one_of.item(variant))
}

/// A field the method type requires, parsed; a missing one is named as required.
fn required<T: TryFrom<String, Error = PrintableTextError>>(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<String>,
) -> Option<T> {
    match value {
        Some(value) => checked(errors, field, T::try_from(value)),
        None => {
            errors.push(FieldError::new(
                field,
                "is required for this payment method type",
            ));
            None
        }
    }
}

/// `payment_method.payment_description`, at most `len_max` characters; a bad one is named.
fn description(
    errors: &mut Vec<FieldError>,
    text: String,
    len_max: usize,
) -> Option<PaymentDescription> {
    let field = "payment_method.payment_description";
    let parsed = checked(errors, field, PaymentDescription::try_from(text))?;
    if parsed.len_chars() > len_max {
        errors.push(FieldError::new(
            field,
            format!(
                "must be 1 to {len_max} characters for this payment method type, not blank, \
                 without control characters or single quotes"
            ),
        ));
        return None;
    }
    Some(parsed)
}

impl PaymentMethodRequest {
    /// The method's details, or one error per bad field (named `payment_method.<field>`)
    /// in `errors`.
    pub(super) fn parse(self, errors: &mut Vec<FieldError>) -> Option<Chosen> {
        if self.kind == SAVED {
            let others = self.token.is_some()
                || self.phone_number.is_some()
                || self.financial_institution_code.is_some()
                || self.user_type.is_some()
                || self.user_legal_id_type.is_some()
                || self.user_legal_id.is_some()
                || self.payment_description.is_some();
            if others {
                errors.push(FieldError::new(
                    "payment_method",
                    "a SAVED method takes only its id",
                ));
            }
            let id = match self.id.as_deref().map(str::parse::<domain::SavedMethodId>) {
                Some(Ok(id)) => Some(id),
                Some(Err(_)) | None => {
                    errors.push(FieldError::new(
                        "payment_method.id",
                        "must be the id of a saved payment method",
                    ));
                    None
                }
            };
            return id.filter(|_| !others).map(|id| Chosen::Saved(Some(id)));
        }
        if self.id.is_some() {
            errors.push(FieldError::new(
                "payment_method.id",
                "is taken only by a SAVED method",
            ));
        }
        self.parse_details(errors).map(Chosen::Details)
    }

    fn parse_details(self, errors: &mut Vec<FieldError>) -> Option<PaymentMethodDetails> {
        let kind = checked(
            errors,
            "payment_method.type",
            self.kind.parse::<PaymentMethodType>(),
        )?;
        let before = errors.len();
        let mut refuse_extra = |present: bool, name: &str| {
            if present {
                errors.push(FieldError::new(
                    &format!("payment_method.{name}"),
                    format!("is not taken by payment method type {}", kind.as_str()),
                ));
            }
        };
        let card = kind == PaymentMethodType::Card;
        let nequi = kind == PaymentMethodType::Nequi;
        let pse = kind == PaymentMethodType::Pse;
        let transfer = kind == PaymentMethodType::BancolombiaTransfer;
        let qr = kind == PaymentMethodType::BancolombiaQr;
        let daviplata = kind == PaymentMethodType::Daviplata;
        refuse_extra(!card && self.token.is_some(), "token");
        refuse_extra(!nequi && self.phone_number.is_some(), "phone_number");
        refuse_extra(
            !pse && self.financial_institution_code.is_some(),
            "financial_institution_code",
        );
        refuse_extra(!(pse || transfer) && self.user_type.is_some(), "user_type");
        refuse_extra(
            !(pse || daviplata) && self.user_legal_id_type.is_some(),
            "user_legal_id_type",
        );
        refuse_extra(
            !(pse || daviplata) && self.user_legal_id.is_some(),
            "user_legal_id",
        );
        refuse_extra(
            !(transfer || qr || daviplata) && self.payment_description.is_some(),
            "payment_description",
        );
        let details = match kind {
            PaymentMethodType::Card => {
                required::<CardToken>(errors, "payment_method.token", self.token).map(|token| {
                    PaymentMethodDetails::Card {
                        token: token.into_string().into(),
                    }
                })
            }
            PaymentMethodType::Nequi => {
                required::<MethodDetail>(errors, "payment_method.phone_number", self.phone_number)
                    .map(|phone| PaymentMethodDetails::Nequi {
                        phone_number: phone.into_string().into(),
                    })
            }
            PaymentMethodType::Pse => {
                let user_type = checked(
                    errors,
                    "payment_method.user_type",
                    self.user_type
                        .ok_or(PseUserTypeError)
                        .and_then(PseUserType::try_from),
                );
                let bank = required::<MethodDetail>(
                    errors,
                    "payment_method.financial_institution_code",
                    self.financial_institution_code,
                );
                let id_type = required::<MethodDetail>(
                    errors,
                    "payment_method.user_legal_id_type",
                    self.user_legal_id_type,
                );
                let id = required::<MethodDetail>(
                    errors,
                    "payment_method.user_legal_id",
                    self.user_legal_id,
                );
                match (bank, user_type, id_type, id) {
                    (Some(bank), Some(user_type), Some(id_type), Some(id)) => {
                        Some(PaymentMethodDetails::Pse {
                            financial_institution_code: bank.into_string(),
                            user_type: user_type.code(),
                            user_legal_id_type: id_type.into_string(),
                            user_legal_id: id.into_string().into(),
                        })
                    }
                    _ => None,
                }
            }
            PaymentMethodType::Efecty => Some(PaymentMethodDetails::Efecty),
            PaymentMethodType::Gcash => Some(PaymentMethodDetails::Gcash),
            PaymentMethodType::Maya => Some(PaymentMethodDetails::Maya),
            PaymentMethodType::BancolombiaTransfer => {
                let user_type = checked(
                    errors,
                    "payment_method.user_type",
                    self.user_type
                        .ok_or(PseUserTypeError)
                        .and_then(PseUserType::try_from),
                );
                let description = match self.payment_description {
                    Some(text) => description(errors, text, PaymentDescription::LEN_MAX),
                    None => {
                        errors.push(FieldError::new(
                            "payment_method.payment_description",
                            "is required for this payment method type",
                        ));
                        None
                    }
                };
                match (user_type, description) {
                    (Some(user_type), Some(description)) => {
                        Some(PaymentMethodDetails::BancolombiaTransfer {
                            user_type: user_type.code(),
                            payment_description: description.into_string().into(),
                        })
                    }
                    _ => None,
                }
            }
            PaymentMethodType::BancolombiaQr => {
                let description = self
                    .payment_description
                    .map(|text| description(errors, text, PaymentDescription::LEN_MAX));
                match description {
                    Some(None) => None,
                    Some(Some(description)) => Some(PaymentMethodDetails::BancolombiaQr {
                        payment_description: Some(description.into_string().into()),
                    }),
                    None => Some(PaymentMethodDetails::BancolombiaQr {
                        payment_description: None,
                    }),
                }
            }
            PaymentMethodType::Daviplata => {
                let id_type = required::<MethodDetail>(
                    errors,
                    "payment_method.user_legal_id_type",
                    self.user_legal_id_type,
                );
                let id = required::<MethodDetail>(
                    errors,
                    "payment_method.user_legal_id",
                    self.user_legal_id,
                );
                let description = self
                    .payment_description
                    .map(|text| description(errors, text, PaymentDescription::SHORT_LEN_MAX));
                match (id_type, id, description) {
                    (_, _, Some(None)) => None,
                    (Some(id_type), Some(id), description) => {
                        Some(PaymentMethodDetails::Daviplata {
                            user_legal_id_type: id_type.into_string(),
                            user_legal_id: id.into_string().into(),
                            payment_description: description
                                .flatten()
                                .map(|d| d.into_string().into()),
                        })
                    }
                    _ => None,
                }
            }
        };
        details.filter(|_| errors.len() == before)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;
    use serde_json::json;

    use super::*;

    /// The details a `payment_method` JSON parses to, or the fields named in its errors.
    fn parse(body: serde_json::Value) -> Result<PaymentMethodDetails, Vec<String>> {
        let request: PaymentMethodRequest = serde_json::from_value(body).expect("shape");
        let mut errors = Vec::new();
        match request.parse(&mut errors) {
            Some(Chosen::Details(details)) if errors.is_empty() => Ok(details),
            _ => Err(errors.into_iter().map(|e| e.field).collect()),
        }
    }

    #[test]
    fn a_bancolombia_transfer_takes_a_user_type_and_a_description() {
        let details = parse(json!({"type": "BANCOLOMBIA_TRANSFER", "user_type": 0,
            "payment_description": "Pedido 42 de Ana Pérez"}))
        .unwrap();
        let PaymentMethodDetails::BancolombiaTransfer {
            user_type,
            payment_description,
        } = details
        else {
            panic!("a transfer");
        };
        assert_eq!(user_type, 0);
        assert_eq!(
            payment_description.expose_secret(),
            "Pedido 42 de Ana Pérez"
        );
        assert_eq!(
            parse(json!({"type": "BANCOLOMBIA_TRANSFER", "user_type": 0})).unwrap_err(),
            ["payment_method.payment_description"]
        );
        assert_eq!(
            parse(json!({"type": "BANCOLOMBIA_TRANSFER", "user_type": 2,
                "payment_description": "it's"}))
            .unwrap_err(),
            [
                "payment_method.user_type",
                "payment_method.payment_description"
            ]
        );
        assert_eq!(
            parse(json!({"type": "BANCOLOMBIA_TRANSFER", "user_type": 0,
                "payment_description": "x", "user_legal_id": "1"}))
            .unwrap_err(),
            ["payment_method.user_legal_id"]
        );
    }

    #[test]
    fn a_bancolombia_qr_takes_an_optional_description_and_nothing_else() {
        assert!(matches!(
            parse(json!({"type": "BANCOLOMBIA_QR"})).unwrap(),
            PaymentMethodDetails::BancolombiaQr {
                payment_description: None
            }
        ));
        let PaymentMethodDetails::BancolombiaQr {
            payment_description: Some(description),
        } = parse(json!({"type": "BANCOLOMBIA_QR", "payment_description": "Mesa 4"})).unwrap()
        else {
            panic!("a QR with its description");
        };
        assert_eq!(description.expose_secret(), "Mesa 4");
        for (field, value) in [
            ("user_type", json!(0)),
            ("phone_number", json!("3991111111")),
            ("token", json!("tok")),
            ("user_legal_id_type", json!("CC")),
        ] {
            let mut body = json!({"type": "BANCOLOMBIA_QR"});
            body[field] = value;
            assert_eq!(
                parse(body).unwrap_err(),
                [format!("payment_method.{field}")]
            );
        }
        assert_eq!(
            parse(json!({"type": "BANCOLOMBIA_QR", "payment_description": "x".repeat(65)}))
                .unwrap_err(),
            ["payment_method.payment_description"]
        );
    }

    #[test]
    fn daviplata_takes_the_holders_document_and_at_most_30_characters_of_description() {
        let PaymentMethodDetails::Daviplata {
            user_legal_id_type,
            user_legal_id,
            payment_description,
        } = parse(json!({"type": "DAVIPLATA", "user_legal_id_type": "CC",
            "user_legal_id": "1134568019"}))
        .unwrap()
        else {
            panic!("Daviplata");
        };
        assert_eq!(user_legal_id_type, "CC");
        assert_eq!(user_legal_id.expose_secret(), "1134568019");
        assert!(payment_description.is_none());
        assert!(
            parse(json!({"type": "DAVIPLATA", "user_legal_id_type": "CC",
            "user_legal_id": "1", "payment_description": "d".repeat(30)}))
            .is_ok()
        );
        assert_eq!(
            parse(json!({"type": "DAVIPLATA", "user_legal_id_type": "CC",
                "user_legal_id": "1", "payment_description": "d".repeat(31)}))
            .unwrap_err(),
            ["payment_method.payment_description"]
        );
        assert_eq!(
            parse(json!({"type": "DAVIPLATA", "user_legal_id_type": "CC"})).unwrap_err(),
            ["payment_method.user_legal_id"]
        );
        assert_eq!(
            parse(json!({"type": "DAVIPLATA", "user_legal_id_type": "CC",
                "user_legal_id": "1", "user_type": 0, "financial_institution_code": "1"}))
            .unwrap_err(),
            [
                "payment_method.financial_institution_code",
                "payment_method.user_type"
            ]
        );
        assert_eq!(
            parse(
                json!({"type": "PSE", "financial_institution_code": "1", "user_type": 0,
                "user_legal_id_type": "CC", "user_legal_id": "1", "payment_description": "x"})
            )
            .unwrap_err(),
            ["payment_method.payment_description"]
        );
    }

    #[test]
    fn the_schema_requires_what_each_rail_requires() {
        let schema = serde_json::to_value(schema().build()).unwrap();
        let variant = |kind: &str| {
            schema["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["properties"]["type"]["enum"][0] == kind)
                .unwrap_or_else(|| panic!("{kind}"))
                .clone()
        };
        let transfer = variant("BANCOLOMBIA_TRANSFER");
        assert_eq!(
            transfer["required"],
            json!(["type", "user_type", "payment_description"])
        );
        assert_eq!(
            transfer["properties"]["payment_description"]["maxLength"],
            64
        );
        assert_eq!(variant("BANCOLOMBIA_QR")["required"], json!(["type"]));
        let daviplata = variant("DAVIPLATA");
        assert_eq!(
            daviplata["required"],
            json!(["type", "user_legal_id_type", "user_legal_id"])
        );
        assert_eq!(
            daviplata["properties"]["payment_description"]["maxLength"],
            30
        );
        assert_eq!(daviplata["additionalProperties"], false);
    }
}
