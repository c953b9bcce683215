//! `POST /v1/payments`: a checkout key creates a payment; a retry with the same
//! Idempotency-Key answers the same payment.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use commands::customers::{CustomerCommandError, CustomerService};
use commands::payments::{CreatePayment, PaymentService};
use connectors::registry;
use domain::{
    CaptureMode, Currency, CustomerError, CustomerId, Email, IdempotencyKey, MerchantId, Money,
    ProviderName, Reference, ReturnUrl, SavedMethodId,
};
use serde::Deserialize;

use super::payment_method::{Chosen, PaymentMethodRequest};
use super::{executed_response, idempotency_key, parse_body};
use crate::auth::{Caller, Role};
use crate::problem::checked;
use crate::problem::{FieldError, Problem};
use crate::routes::customer::CustomerField;
use crate::routes::payment_body::PaymentBody;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "amount": "125000.00",
    "currency": "COP",
    "reference": "order-1042",
    "payment_method": {"type": "CARD", "token": "tok_sandbox_approved"},
    "capture": "automatic",
    "customer_email": "ana@example.com"
}))]
pub(super) struct CreatePaymentRequest {
    #[schema(schema_with = crate::openapi::money_text)]
    amount: String,
    #[schema(schema_with = crate::openapi::currency_code)]
    currency: String,
    /// The merchant's own order reference, unique per merchant.
    #[schema(min_length = 1, max_length = 128, pattern = "^[\\x20-\\x7e]+$")]
    reference: String,
    /// How the customer pays; left out, the default saved method of `customer` pays.
    #[serde(default)]
    #[schema(schema_with = super::payment_method::schema)]
    payment_method: Option<PaymentMethodRequest>,
    /// `automatic` (the default) or `manual`: authorize now, capture later.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::capture_mode)]
    capture: Option<String>,
    /// The merchant's preferred provider; the router falls back to another only when this
    /// one is known not to have taken the payment.
    #[serde(default)]
    #[schema(schema_with = provider_name)]
    provider: Option<String>,
    #[serde(default)]
    #[schema(max_length = 254)]
    customer_email: Option<String>,
    /// A customer's id (their saved default method pays when `payment_method` is left out),
    /// or the payer's details, for providers that ask for them.
    #[serde(default)]
    #[schema(schema_with = crate::routes::customer::customer_field_schema)]
    customer: Option<CustomerField>,
    /// Where a redirect flow (PSE, wallets) sends the customer back.
    #[serde(default)]
    return_url: Option<String>,
}

fn provider_name() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::one_of_texts(registry::known())
}

/// A payment with a saved method, before the method is looked up.
struct OneClick {
    customer: Option<CustomerId>,
    method: Option<SavedMethodId>,
}

impl CreatePaymentRequest {
    /// Parse, don't validate: every field is parsed, then either all are good or the caller
    /// hears about each bad one. A saved method is looked up by the caller: the details
    /// carry a placeholder until then.
    fn parse(
        self,
        merchant: &MerchantId,
        key: IdempotencyKey,
    ) -> Result<(CreatePayment, Option<OneClick>), Problem> {
        let mut errors = Vec::new();
        let currency = checked(&mut errors, "currency", self.currency.parse::<Currency>());
        let amount =
            currency.and_then(|c| checked(&mut errors, "amount", Money::parse(&self.amount, c)));
        let reference = checked(&mut errors, "reference", Reference::parse(&self.reference));
        let (customer_id, customer) = match self.customer {
            None => (None, None),
            Some(CustomerField::Details(details)) => (None, Some(details)),
            Some(CustomerField::Id(id)) => match id.parse::<CustomerId>() {
                Ok(id) => (Some(id), None),
                Err(_) => {
                    errors.push(FieldError::new(
                        "customer",
                        "must be a customer's id or the payer's details",
                    ));
                    (None, None)
                }
            },
        };
        let chosen = match self.payment_method {
            Some(method) => method.parse(&mut errors),
            // Only a customer's default pays without a method.
            None if customer_id.is_some() => Some(Chosen::Saved(None)),
            None => {
                errors.push(FieldError::new(
                    "payment_method",
                    "is required unless `customer` names a customer with a default method",
                ));
                None
            }
        };
        let (method, one_click) = match chosen {
            Some(Chosen::Details(details)) => (Some(details), None),
            Some(Chosen::Saved(method)) => (
                Some(connectors::PaymentMethodDetails::Efecty),
                Some(OneClick {
                    customer: customer_id,
                    method,
                }),
            ),
            None => (None, None),
        };
        let capture_mode = checked(
            &mut errors,
            "capture",
            self.capture
                .as_deref()
                .map_or(Ok(CaptureMode::Automatic), str::parse),
        );
        // Any provider this build knows, configured here or not: the router passes over one
        // it lacks.
        let provider = self.provider.and_then(|name| {
            let known = ProviderName::try_from(name)
                .ok()
                .filter(|name| registry::known().any(|known| known == name.as_str()));
            if known.is_none() {
                let names: Vec<&str> = registry::known().collect();
                let refusal = format!("must be one of {}", names.join(", "));
                errors.push(FieldError::new("provider", refusal));
            }
            known
        });
        let customer_email = self
            .customer_email
            .and_then(|email| checked(&mut errors, "customer_email", Email::try_from(email)));
        let customer = customer.unwrap_or_default().parse(&mut errors);
        let return_url = self
            .return_url
            .and_then(|url| checked(&mut errors, "return_url", ReturnUrl::try_from(url)));
        match (amount, reference, method, capture_mode) {
            (Some(amount), Some(reference), Some(payment_method), Some(capture_mode))
                if errors.is_empty() =>
            {
                Ok((
                    CreatePayment {
                        merchant_id: merchant.clone(),
                        idempotency_key: key,
                        reference,
                        amount,
                        payment_method,
                        capture_mode,
                        customer_email: customer_email.map(Email::into_string),
                        customer,
                        provider_preference: provider.map(|p| p.into_string()),
                        return_url: return_url.map(ReturnUrl::into_string),
                    },
                    one_click,
                ))
            }
            _ => Err(Problem::invalid(errors)),
        }
    }
}

/// Creates a payment and offers it to a provider. Approved, declined or pending (a redirect
/// or cash code in `next_action`), the answer is the payment; a retry with the same
/// `Idempotency-Key` answers the same payment with `200`.
#[utoipa::path(
    post,
    path = "/v1/payments",
    operation_id = "createPayment",
    tag = "payments",
    params(("Idempotency-Key" = String, Header, description = super::IDEMPOTENCY_KEY, min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    request_body = CreatePaymentRequest,
    responses(
        (status = 201, description = "Created: the payment as the provider left it.", body = PaymentBody,
            links(
                ("GetPayment" = (operation_id = "getPayment", parameters(("id" = "$response.body#/id")))),
                ("ListPaymentEvents" = (operation_id = "listPaymentEvents", parameters(("id" = "$response.body#/id")))),
                ("CapturePayment" = (operation_id = "capturePayment", parameters(("id" = "$response.body#/id")))),
                ("RefundPayment" = (operation_id = "refundPayment", parameters(("id" = "$response.body#/id")))),
                ("VoidPayment" = (operation_id = "voidPayment", parameters(("id" = "$response.body#/id")))),
                ("SyncPayment" = (operation_id = "syncPayment", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 200, description = "A retry with the same `Idempotency-Key`: the payment it created.", body = PaymentBody),
        (status = 400, description = "No `Idempotency-Key`, or one that is not printable ASCII.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The merchant already has a payment with this reference.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not valid, no provider takes the payment, the provider refused it, or the key was used for another body.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider failed without taking the payment.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No provider is available, or the event store is down.", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The provider's answer was lost: the payment is recorded and resolved with the provider; retry with the same key.", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn create_payment(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<PaymentService>,
    customers: web::Data<CustomerService>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    if caller.role != Role::Checkout {
        return Err(Problem::forbidden(
            "only a checkout key can create payments",
        ));
    }
    let merchant = caller
        .merchant
        .as_ref()
        .ok_or_else(|| Problem::forbidden("this key is not bound to a merchant"))?;
    let key = idempotency_key(&req)?;
    let request: CreatePaymentRequest = parse_body(&req, &body)?;
    let (mut command, one_click) = request.parse(merchant, key)?;
    if let Some(one_click) = one_click {
        // The saved method's provider is the only one that can charge its source.
        let charge = customers
            .charge_of(merchant, one_click.customer, one_click.method)
            .await
            .map_err(|error| match error {
                CustomerCommandError::Rejected(refusal) => {
                    let field = if one_click.method.is_some() {
                        "payment_method.id"
                    } else {
                        "customer"
                    };
                    let message = match refusal {
                        CustomerError::NotFound => "names no customer of this merchant".to_owned(),
                        CustomerError::NoSuchMethod if one_click.method.is_none() => {
                            "the customer has no default payment method".to_owned()
                        }
                        other => other.to_string(),
                    };
                    Problem::invalid(vec![FieldError::new(field, message)])
                }
                other => other.into(),
            })?;
        if let Some(asked) = command
            .provider_preference
            .as_deref()
            .filter(|asked| *asked != charge.provider)
        {
            return Err(Problem::invalid(vec![FieldError::new(
                "provider",
                format!(
                    "the saved method is charged at `{}`, where its source is, not at `{asked}`",
                    charge.provider
                ),
            )]));
        }
        command.provider_preference = Some(charge.provider);
        command.customer_email = command.customer_email.or(charge.email);
        command.payment_method = connectors::PaymentMethodDetails::Saved {
            method: charge.method_type,
            payment_method_id: charge.payment_method_id,
            source_id: charge.source_id,
        };
    }
    let (executed, created) = service.create(command).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(executed_response(status, &executed))
}
