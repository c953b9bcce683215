use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a payment is in its life. `DECLINED`, `FAILED`, `VOIDED` and `REFUNDED` are ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Not yet initiated: the state of an empty stream.
    #[default]
    New,
    Pending,
    Authorized,
    Approved,
    PartiallyRefunded,
    Refunded,
    Declined,
    Failed,
    Voided,
    Expired,
}

impl PaymentStatus {
    /// Every status a payment is seen in (`NEW` is only an empty stream's).
    pub const VISIBLE: [PaymentStatus; 9] = [
        PaymentStatus::Pending,
        PaymentStatus::Authorized,
        PaymentStatus::Approved,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
        PaymentStatus::Declined,
        PaymentStatus::Failed,
        PaymentStatus::Voided,
        PaymentStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::New => "NEW",
            PaymentStatus::Pending => "PENDING",
            PaymentStatus::Authorized => "AUTHORIZED",
            PaymentStatus::Approved => "APPROVED",
            PaymentStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            PaymentStatus::Refunded => "REFUNDED",
            PaymentStatus::Declined => "DECLINED",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Voided => "VOIDED",
            PaymentStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(text: &str) -> Option<PaymentStatus> {
        PaymentStatus::VISIBLE
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// No command can move the payment on from here.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PaymentStatus::Refunded
                | PaymentStatus::Declined
                | PaymentStatus::Failed
                | PaymentStatus::Voided
                | PaymentStatus::Expired
        )
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
