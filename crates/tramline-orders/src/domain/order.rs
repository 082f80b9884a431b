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

impl OrderEventType {
    /// The status this event leaves its order in.
    pub fn status(self) -> OrderStatus {
        match self {
            OrderEventType::Created => OrderStatus::Pending,
            OrderEventType::Approved => OrderStatus::Approved,
            OrderEventType::Rejected => OrderStatus::Rejected,
            OrderEventType::Cancelled => OrderStatus::Cancelled,
            OrderEventType::Completed => OrderStatus::Completed,
        }
    }
}

/// The command to place an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrder {
    /// Who orders.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub customer_id: String,
    /// What is ordered.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub product_id: String,
    /// How many.
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(deserialize_with = "whole_number")]
    pub quantity: i64,
    /// Total price in cents (integer, never floating point).
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "whole_number")]
    pub amount_cents: i64,
    /// Where to deliver (several lines allowed).
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F][^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub shipping_address: String,
}

/// An integer as JSON Schema's `integer` means it: any JSON number without a fractional part
/// (`269.0` too, which some clients write), within `i64`.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a whole number")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<i64, E> {
            // 2^63 is exactly representable; anything at or beyond it is out of range.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
                Ok(v as i64)
            } else {
                Err(E::custom(format!("{v} is not a whole number in range")))
            }
        }
    }
    d.deserialize_any(Whole)
}

/// Longest accepted identifier (customer, product), in characters: what the columns hold, and
/// what JSON Schema's `maxLength` counts.
pub const MAX_ID: usize = 255;
/// Longest accepted shipping address, in characters.
pub const MAX_TEXT: usize = 512;

/// Whitespace as the OpenAPI document's pattern (an ECMAScript regex) means `\s`: Unicode's
/// white space plus U+FEFF (U+0085, white space to Unicode only, is a control character and
/// refused as such).
fn blank(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// A text field: some non-blank character, no control characters (PostgreSQL cannot store
/// NUL, and none belongs in an id) but line breaks and tabs where `lines` allows them, at most
/// `max` characters.
fn check_text(field: &'static str, value: &str, max: usize, lines: bool) -> Result<()> {
    let invalid = |reason: String| Err(OrderSystemError::Invalid { field, reason });
    let allowed = |c: char| lines && matches!(c, '\t' | '\n' | '\r');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return invalid("must not contain control characters".into());
    }
    if value.chars().all(blank) {
        return invalid("must not be empty".into());
    }
    if value.chars().count() > max {
        return invalid(format!("must be at most {max} characters"));
    }
    Ok(())
}

impl CreateOrder {
    /// Checks every value; the first invalid one is reported.
    pub fn validate(&self) -> Result<()> {
        check_values(
            &self.customer_id,
            &self.product_id,
            self.quantity,
            self.amount_cents,
            &self.shipping_address,
        )
    }
}

/// The checks of [`CreateOrder::validate`], on an order's values wherever they come from.
fn check_values(
    customer_id: &str,
    product_id: &str,
    quantity: i64,
    amount_cents: i64,
    shipping_address: &str,
) -> Result<()> {
    check_text("customerId", customer_id, MAX_ID, false)?;
    check_text("productId", product_id, MAX_ID, false)?;
    check_text("shippingAddress", shipping_address, MAX_TEXT, true)?;
    if !(1..=10_000).contains(&quantity) {
        return Err(OrderSystemError::Invalid {
            field: "quantity",
            reason: format!("must be between 1 and 10000, got {quantity}"),
        });
    }
    if amount_cents <= 0 {
        return Err(OrderSystemError::Invalid {
            field: "amountCents",
            reason: format!("must be positive, got {amount_cents}"),
        });
    }
    Ok(())
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
            status: OrderEventType::Created.status(),
            version: 1,
        };
        Ok((order, OrderEventType::Created))
    }

    /// Checks the values it was placed with as [`CreateOrder::validate`] does: an order
    /// read from elsewhere (an event's snapshot) holds only what placing an order accepts.
    pub fn validate(&self) -> Result<()> {
        check_values(
            &self.customer_id,
            &self.product_id,
            self.quantity,
            self.amount_cents,
            &self.shipping_address,
        )
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
        Ok(self.change(OrderEventType::Cancelled))
    }

    /// The payment was approved: a PENDING order becomes APPROVED; otherwise nothing changes.
    pub fn on_payment_approved(&mut self) -> Option<OrderEventType> {
        (self.status == OrderStatus::Pending).then(|| self.change(OrderEventType::Approved))
    }

    /// The payment was rejected: a PENDING order becomes REJECTED; otherwise nothing changes.
    pub fn on_payment_rejected(&mut self) -> Option<OrderEventType> {
        (self.status == OrderStatus::Pending).then(|| self.change(OrderEventType::Rejected))
    }

    /// The delivery completed: a PENDING or APPROVED order becomes COMPLETED.
    pub fn on_delivery_completed(&mut self) -> Option<OrderEventType> {
        matches!(self.status, OrderStatus::Pending | OrderStatus::Approved)
            .then(|| self.change(OrderEventType::Completed))
    }

    fn change(&mut self, event: OrderEventType) -> OrderEventType {
        self.status = event.status();
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
    fn whole_numbers_written_as_floats_are_integers() {
        let parse = |quantity: &str| {
            serde_json::from_str::<CreateOrder>(&format!(
                r#"{{"customerId":"c","productId":"p","quantity":{quantity},"amountCents":1,"shippingAddress":"a"}}"#
            ))
            .map(|c| c.quantity)
        };
        assert_eq!(parse("269").ok(), Some(269));
        assert_eq!(parse("269.0").ok(), Some(269));
        assert_eq!(parse("-3e2").ok(), Some(-300));
        for refused in ["2.5", "1e300", "9223372036854775808", "\"3\"", "null"] {
            assert!(parse(refused).is_err(), "{refused} accepted");
        }
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
