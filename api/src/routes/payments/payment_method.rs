//! The `payment_method` object of `POST /v1/payments`: its `type` and the fields that type
//! takes, parsed into what the provider call needs.

use connectors::PaymentMethodDetails;
use domain::{
    CardToken, MethodDetail, PaymentMethodType, PrintableTextError, PseUserType, PseUserTypeError,
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
                .property(
                    "user_type",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .enum_values(Some([0, 1]))
                        .description(Some("0: a person, 1: a company")),
                )
                .property("user_legal_id_type", detail().examples(["CC"]))
                .property("user_legal_id", detail())
                .required("financial_institution_code")
                .required("user_type")
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
                || self.user_legal_id.is_some();
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
        refuse_extra(!card && self.token.is_some(), "token");
        refuse_extra(!nequi && self.phone_number.is_some(), "phone_number");
        refuse_extra(
            !pse && self.financial_institution_code.is_some(),
            "financial_institution_code",
        );
        refuse_extra(!pse && self.user_type.is_some(), "user_type");
        refuse_extra(
            !pse && self.user_legal_id_type.is_some(),
            "user_legal_id_type",
        );
        refuse_extra(!pse && self.user_legal_id.is_some(), "user_legal_id");
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
        };
        details.filter(|_| errors.len() == before)
    }
}
