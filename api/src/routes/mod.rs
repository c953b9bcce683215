pub mod audit;
pub mod catalog;
pub mod checkout;
mod customer;
pub mod health;
pub mod payment_body;
pub mod payments;
pub mod reports;
pub mod webhooks;
