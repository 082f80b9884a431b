//! The payment: created PENDING when an order is created, then APPROVED or REJECTED by
//! command, or CANCELLED when its order is cancelled first.

use super::{named_enum, refuse};
use crate::error::Result;
use serde::{Deserialize, Serialize};

named_enum! {
    /// Where a payment is in its lifecycle.
    PaymentStatus {
        /// Waiting for approval.
        Pending = "PENDING",
        /// Approved.
        Approved = "APPROVED",
        /// Rejected.
        Rejected = "REJECTED",
        /// Its order was cancelled before approval.
        Cancelled = "CANCELLED",
    }
}

named_enum! {
    /// Events a payment emits, one per state change.
    PaymentEventType {
        /// A new payment.
        Created = "PaymentCreated",
        /// Approved.
        Approved = "PaymentApproved",
        /// Rejected.
        Rejected = "PaymentRejected",
        /// Cancelled with its order.
        Cancelled = "PaymentCancelled",
    }
}

impl PaymentEventType {
    /// The status this event leaves its payment in.
    pub fn status(self) -> PaymentStatus {
        match self {
            PaymentEventType::Created => PaymentStatus::Pending,
            PaymentEventType::Approved => PaymentStatus::Approved,
            PaymentEventType::Rejected => PaymentStatus::Rejected,
            PaymentEventType::Cancelled => PaymentStatus::Cancelled,
        }
    }
}

/// A payment's full state; also the payload of every payment event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// The payment id.
    pub payment_id: String,
    /// The order it pays for (the events' partition key).
    pub order_id: String,
    /// Amount in cents.
    pub amount_cents: i64,
    /// Lifecycle status.
    pub status: PaymentStatus,
    /// Incremented by every change, starting at 1.
    pub version: i64,
}

impl Payment {
    /// A payment for a newly created order: PENDING, version 1.
    pub fn for_order(
        payment_id: String,
        order_id: String,
        amount_cents: i64,
    ) -> (Payment, PaymentEventType) {
        let p = Payment {
            payment_id,
            order_id,
            amount_cents,
            status: PaymentEventType::Created.status(),
            version: 1,
        };
        (p, PaymentEventType::Created)
    }

    /// Approves a PENDING payment.
    pub fn approve(&mut self) -> Result<PaymentEventType> {
        self.decide(PaymentEventType::Approved, "approve")
    }

    /// Rejects a PENDING payment.
    pub fn reject(&mut self) -> Result<PaymentEventType> {
        self.decide(PaymentEventType::Rejected, "reject")
    }

    /// Its order was cancelled: a PENDING payment is cancelled; a decided one stays as it is.
    pub fn on_order_cancelled(&mut self) -> Option<PaymentEventType> {
        self.decide(PaymentEventType::Cancelled, "cancel").ok()
    }

    fn decide(
        &mut self,
        event: PaymentEventType,
        action: &'static str,
    ) -> Result<PaymentEventType> {
        if self.status != PaymentStatus::Pending {
            return Err(refuse(
                "payment",
                &self.payment_id,
                self.status.as_str(),
                action,
            ));
        }
        self.status = event.status();
        self.version += 1;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OrderSystemError;

    fn pending() -> Payment {
        Payment::for_order("p-1".into(), "o-1".into(), 100).0
    }

    #[test]
    fn given_pending_when_approved_then_approved_version_2() {
        let mut p = pending();
        assert_eq!(p.approve().unwrap(), PaymentEventType::Approved);
        assert_eq!((p.status, p.version), (PaymentStatus::Approved, 2));
    }

    #[test]
    fn given_approved_when_rejected_then_refused_and_unchanged() {
        let mut p = pending();
        p.approve().unwrap();
        let before = p.clone();
        assert!(matches!(
            p.reject(),
            Err(OrderSystemError::IllegalTransition { .. })
        ));
        assert_eq!(p, before);
    }

    #[test]
    fn given_pending_when_order_cancelled_then_cancelled_once() {
        let mut p = pending();
        assert_eq!(p.on_order_cancelled(), Some(PaymentEventType::Cancelled));
        assert_eq!(p.on_order_cancelled(), None);
        assert_eq!((p.status, p.version), (PaymentStatus::Cancelled, 2));
    }
}
