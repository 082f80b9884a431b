//! The order: created PENDING, then APPROVED or REJECTED by its payment, COMPLETED by its
//! delivery, or CANCELLED by the customer while still PENDING.
//!
//! Reactions are tolerant of the order in which the two upstream topics arrive: a
//! `DeliveryCompleted` seen before `PaymentApproved` still completes the order (a delivery
//! exists only for an approved payment), and a late `PaymentApproved` then changes nothing.

use super::{named_enum, refuse};
use crate::error::{OrderSystemError, Result};
use serde::{Deserialize, Serialize};

named_enum! {
    /// Where an order is in its lifecycle.
    OrderStatus {
        /// Created, waiting for its payment.
        Pending = "PENDING",
        /// Its payment was approved.
        Approved = "APPROVED",
        /// Its payment was rejected.
        Rejected = "REJECTED",
        /// Cancelled by the customer.
        Cancelled = "CANCELLED",
        /// Delivered.
        Completed = "COMPLETED",
    }
}

named_enum! {
    /// Events an order emits, one per state change.
    OrderEventType {
        /// A new order.
        Created = "OrderCreated",
        /// Payment approved.
        Approved = "OrderApproved",
        /// Payment rejected.
        Rejected = "OrderRejected",
        /// Cancelled by the customer.
        Cancelled = "OrderCancelled",
        /// Delivery completed.
        Completed = "OrderCompleted",
    }
}

/// The command to place an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrder {
    /// Who orders.
    pub customer_id: String,
    /// What is ordered.
    pub product_id: String,
    /// How many.
    pub quantity: i64,
    /// Total price in cents (integer, never floating point).
    pub amount_cents: i64,
    /// Where to deliver.
    pub shipping_address: String,
}

/// Longest accepted text field, in bytes.
pub const MAX_TEXT: usize = 512;

fn check_text(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(OrderSystemError::Invalid {
            field,
            reason: "must not be empty".into(),
        });
    }
    if value.len() > MAX_TEXT {
        return Err(OrderSystemError::Invalid {
            field,
            reason: format!("must be at most {MAX_TEXT} bytes"),
        });
    }
    Ok(())
}

impl CreateOrder {
    /// Checks every value; the first invalid one is reported.
    pub fn validate(&self) -> Result<()> {
        check_text("customerId", &self.customer_id)?;
        check_text("productId", &self.product_id)?;
        check_text("shippingAddress", &self.shipping_address)?;
        if !(1..=10_000).contains(&self.quantity) {
            return Err(OrderSystemError::Invalid {
                field: "quantity",
                reason: format!("must be between 1 and 10000, got {}", self.quantity),
            });
        }
        if self.amount_cents <= 0 {
            return Err(OrderSystemError::Invalid {
                field: "amountCents",
                reason: format!("must be positive, got {}", self.amount_cents),
            });
        }
        Ok(())
    }
}

/// An order's full state; also the payload of every order event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// The order id, also every event's partition key.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// What was ordered.
    pub product_id: String,
    /// How many.
    pub quantity: i64,
    /// Total price in cents.
    pub amount_cents: i64,
    /// Where to deliver.
    pub shipping_address: String,
    /// Lifecycle status.
    pub status: OrderStatus,
    /// Incremented by every change, starting at 1.
    pub version: i64,
}

impl Order {
    /// Places an order: validated, PENDING, version 1.
    pub fn create(order_id: String, cmd: CreateOrder) -> Result<(Order, OrderEventType)> {
        cmd.validate()?;
        let order = Order {
            order_id,
            customer_id: cmd.customer_id,
            product_id: cmd.product_id,
            quantity: cmd.quantity,
            amount_cents: cmd.amount_cents,
            shipping_address: cmd.shipping_address,
            status: OrderStatus::Pending,
            version: 1,
        };
        Ok((order, OrderEventType::Created))
    }

    /// The customer cancels; only a PENDING order can be cancelled.
    pub fn cancel(&mut self) -> Result<OrderEventType> {
        if self.status != OrderStatus::Pending {
            return Err(refuse(
                "order",
                &self.order_id,
                self.status.as_str(),
                "cancel",
            ));
        }
        Ok(self.change(OrderStatus::Cancelled, OrderEventType::Cancelled))
    }

    /// The payment was approved: a PENDING order becomes APPROVED; otherwise nothing changes.
    pub fn on_payment_approved(&mut self) -> Option<OrderEventType> {
        (self.status == OrderStatus::Pending)
            .then(|| self.change(OrderStatus::Approved, OrderEventType::Approved))
    }

    /// The payment was rejected: a PENDING order becomes REJECTED; otherwise nothing changes.
    pub fn on_payment_rejected(&mut self) -> Option<OrderEventType> {
        (self.status == OrderStatus::Pending)
            .then(|| self.change(OrderStatus::Rejected, OrderEventType::Rejected))
    }

    /// The delivery completed: a PENDING or APPROVED order becomes COMPLETED.
    pub fn on_delivery_completed(&mut self) -> Option<OrderEventType> {
        matches!(self.status, OrderStatus::Pending | OrderStatus::Approved)
            .then(|| self.change(OrderStatus::Completed, OrderEventType::Completed))
    }

    fn change(&mut self, status: OrderStatus, event: OrderEventType) -> OrderEventType {
        self.status = status;
        self.version += 1;
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed() -> Order {
        Order::create(
            "o-1".into(),
            CreateOrder {
                customer_id: "c-1".into(),
                product_id: "p-1".into(),
                quantity: 2,
                amount_cents: 1999,
                shipping_address: "1 Main St".into(),
            },
        )
        .unwrap()
        .0
    }

    #[test]
    fn given_nothing_when_created_then_pending_version_1() {
        let o = placed();
        assert_eq!((o.status, o.version), (OrderStatus::Pending, 1));
    }

    #[test]
    fn given_invalid_values_when_created_then_refused() {
        let mut cmd = CreateOrder {
            customer_id: " ".into(),
            product_id: "p".into(),
            quantity: 1,
            amount_cents: 1,
            shipping_address: "a".into(),
        };
        assert!(matches!(
            Order::create("o".into(), cmd.clone()),
            Err(OrderSystemError::Invalid {
                field: "customerId",
                ..
            })
        ));
        cmd.customer_id = "c".into();
        cmd.amount_cents = 0;
        assert!(matches!(
            Order::create("o".into(), cmd.clone()),
            Err(OrderSystemError::Invalid {
                field: "amountCents",
                ..
            })
        ));
        cmd.amount_cents = 1;
        cmd.quantity = 0;
        assert!(matches!(
            Order::create("o".into(), cmd),
            Err(OrderSystemError::Invalid {
                field: "quantity",
                ..
            })
        ));
    }

    #[test]
    fn given_pending_when_payment_approved_then_approved_and_later_completed() {
        let mut o = placed();
        assert_eq!(o.on_payment_approved(), Some(OrderEventType::Approved));
        assert_eq!(o.on_delivery_completed(), Some(OrderEventType::Completed));
        assert_eq!((o.status, o.version), (OrderStatus::Completed, 3));
    }

    #[test]
    fn given_delivery_completed_first_when_payment_approved_arrives_then_nothing_changes() {
        let mut o = placed();
        assert_eq!(o.on_delivery_completed(), Some(OrderEventType::Completed));
        assert_eq!(o.on_payment_approved(), None);
        assert_eq!((o.status, o.version), (OrderStatus::Completed, 2));
    }

    #[test]
    fn given_approved_when_cancelled_then_refused_and_unchanged() {
        let mut o = placed();
        o.on_payment_approved();
        let before = o.clone();
        assert!(matches!(
            o.cancel(),
            Err(OrderSystemError::IllegalTransition {
                action: "cancel",
                ..
            })
        ));
        assert_eq!(o, before);
    }

    #[test]
    fn given_cancelled_when_payment_rejected_then_nothing_changes() {
        let mut o = placed();
        assert_eq!(o.cancel().unwrap(), OrderEventType::Cancelled);
        assert_eq!(o.on_payment_rejected(), None);
        assert_eq!(o.status, OrderStatus::Cancelled);
    }

    #[test]
    fn names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(
            OrderEventType::parse("OrderCreated"),
            Some(OrderEventType::Created)
        );
        assert_eq!(OrderEventType::parse("orderCreated"), None);
    }
}
