//! Raw card numbers are refused wherever a request carries them: the body where it is parsed
//! (`routes::payments::parse_body`), the query string and the headers here, before any handler
//! or access log reads them. `Authorization` is left alone: it carries a key or token payledger
//! or its auth service issued, whose characters may hold a digit run by chance. Providers'
//! webhooks are theirs to shape and are verified instead.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, ResponseError};
use domain::card_number::contains_card_number;

use crate::problem::Problem;

pub async fn refuse(
    request: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(place) = card_number_outside_the_body(&request) else {
        return next.call(request).await.map(|r| r.map_into_left_body());
    };
    let refused = Problem::card_number_refused(&place).error_response();
    let (request, _) = request.into_parts();
    Ok(ServiceResponse::new(request, refused).map_into_right_body())
}

/// Where a card number is outside the body: `query.<name>` or `header.<name>` (`query` alone
/// when the parameter's name is the number, so the answer never repeats it).
fn card_number_outside_the_body(request: &ServiceRequest) -> Option<String> {
    if request.path().starts_with("/v1/webhooks/") {
        return None;
    }
    let query = request.query_string();
    if !query.is_empty() {
        // Percent-decoded; a query that does not decode is checked as it came.
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map(web::Query::into_inner)
            .unwrap_or_else(|_| vec![(String::new(), query.to_owned())]);
        for (name, value) in &pairs {
            if contains_card_number(name) {
                return Some("query".to_owned());
            }
            if contains_card_number(value) {
                return Some(format!("query.{name}"));
            }
        }
    }
    request
        .headers()
        .iter()
        .filter(|(name, _)| *name != AUTHORIZATION)
        .find(|(_, value)| contains_card_number(&String::from_utf8_lossy(value.as_bytes())))
        .map(|(name, _)| format!("header.{name}"))
}
