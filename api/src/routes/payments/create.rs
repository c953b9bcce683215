//! `POST /v1/payments`: a checkout key creates a payment; a retry with the same
//! Idempotency-Key answers the same payment.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use commands::payments::{CreatePayment, PaymentService};
use connectors::registry;
use domain::{
    CaptureMode, Currency, Email, IdempotencyKey, MerchantId, Money, ProviderName, Reference,
    ReturnUrl,
};
use serde::Deserialize;

use super::payment_method::PaymentMethodRequest;
use super::{executed_response, idempotency_key, parse_body};
use crate::auth::{Caller, Role};
use crate::problem::checked;
use crate::problem::{FieldError, Problem};
use crate::routes::customer::CustomerRequest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePaymentRequest {
    amount: String,
    currency: String,
    reference: String,
    payment_method: PaymentMethodRequest,
    #[serde(default)]
    capture: Option<String>,
    /// The merchant's preferred provider; the router falls back to others.
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    customer_email: Option<String>,
    /// The payer's details, for providers that ask for them.
    #[serde(default)]
    customer: Option<CustomerRequest>,
    /// Where a redirect flow (PSE, wallets) sends the customer back.
    #[serde(default)]
    return_url: Option<String>,
}

impl CreatePaymentRequest {
    /// Parse, don't validate: every field is parsed, then either all are good or the caller
    /// hears about each bad one.
    fn parse(self, merchant: &MerchantId, key: IdempotencyKey) -> Result<CreatePayment, Problem> {
        let mut errors = Vec::new();
        let currency = checked(&mut errors, "currency", self.currency.parse::<Currency>());
        let amount =
            currency.and_then(|c| checked(&mut errors, "amount", Money::parse(&self.amount, c)));
        let reference = checked(&mut errors, "reference", Reference::parse(&self.reference));
        let method = self.payment_method.parse(&mut errors);
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
        let customer = self.customer.unwrap_or_default().parse(&mut errors);
        let return_url = self
            .return_url
            .and_then(|url| checked(&mut errors, "return_url", ReturnUrl::try_from(url)));
        match (amount, reference, method, capture_mode) {
            (Some(amount), Some(reference), Some(payment_method), Some(capture_mode))
                if errors.is_empty() =>
            {
                Ok(CreatePayment {
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
                })
            }
            _ => Err(Problem::invalid(errors)),
        }
    }
}

#[tracing::instrument(skip_all)]
pub(super) async fn create_payment(
    req: HttpRequest,
    caller: Caller,
    service: web::Data<PaymentService>,
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
    let command = request.parse(merchant, key)?;
    let (executed, created) = service.create(command).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(executed_response(status, &executed))
}
