//! The events on the wire: topic, headers and JSON payload of each, and decoding them back.
//!
//! Every event's partition key is its order id, so all events of one order stay in order on
//! their topic, and its payload is the aggregate's full snapshot (camelCase JSON) including
//! the version.

use crate::domain::delivery::{Delivery, DeliveryEventType};
use crate::domain::order::{Order, OrderEventType};
use crate::domain::payment::{Payment, PaymentEventType};
use crate::error::{OrderSystemError, Result};
use tramline_core::envelope::{AGGREGATE_ID, AGGREGATE_TYPE, EVENT_TYPE};
use tramline_core::Envelope;

/// Topic of the order service's events.
pub const ORDER_EVENTS: &str = "order-events";
/// Topic of the payment service's events.
pub const PAYMENT_EVENTS: &str = "payment-events";
/// Topic of the delivery service's events.
pub const DELIVERY_EVENTS: &str = "delivery-events";
/// All three topics.
pub const ALL_TOPICS: [&str; 3] = [ORDER_EVENTS, PAYMENT_EVENTS, DELIVERY_EVENTS];

/// One domain event: what happened and the aggregate's state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// An order changed.
    Order(OrderEventType, Order),
    /// A payment changed.
    Payment(PaymentEventType, Payment),
    /// A delivery changed.
    Delivery(DeliveryEventType, Delivery),
}

impl DomainEvent {
    /// The order this event belongs to: its partition key.
    pub fn order_id(&self) -> &str {
        match self {
            DomainEvent::Order(_, o) => &o.order_id,
            DomainEvent::Payment(_, p) => &p.order_id,
            DomainEvent::Delivery(_, d) => &d.order_id,
        }
    }

    /// The event as an outbox message.
    pub fn to_envelope(&self) -> Envelope {
        let (topic, aggregate, id, event_type, payload) = match self {
            DomainEvent::Order(t, o) => (
                ORDER_EVENTS,
                "Order",
                &o.order_id,
                t.as_str(),
                serde_json::to_string(o),
            ),
            DomainEvent::Payment(t, p) => (
                PAYMENT_EVENTS,
                "Payment",
                &p.payment_id,
                t.as_str(),
                serde_json::to_string(p),
            ),
            DomainEvent::Delivery(t, d) => (
                DELIVERY_EVENTS,
                "Delivery",
                &d.delivery_id,
                t.as_str(),
                serde_json::to_string(d),
            ),
        };
        Envelope::new(
            topic,
            self.order_id(),
            payload.expect("snapshots always serialise"),
        )
        .with_header(EVENT_TYPE, event_type)
        .with_header(AGGREGATE_TYPE, aggregate)
        .with_header(AGGREGATE_ID, id.as_str())
    }

    /// Decodes a message; fails for an unknown event type, a type on the wrong topic, a
    /// payload that does not parse, or a key that is not the payload's order id.
    pub fn decode(message: &Envelope) -> Result<DomainEvent> {
        let event_type = message
            .event_type()
            .ok_or_else(|| OrderSystemError::Malformed(format!("no {EVENT_TYPE} header")))?;
        let bad_payload = |e: serde_json::Error| {
            OrderSystemError::Malformed(format!("{event_type} payload: {e}"))
        };
        let event = match message.topic.as_str() {
            ORDER_EVENTS => OrderEventType::parse(event_type)
                .map(|t| serde_json::from_str(&message.payload).map(|o| DomainEvent::Order(t, o))),
            PAYMENT_EVENTS => PaymentEventType::parse(event_type).map(|t| {
                serde_json::from_str(&message.payload).map(|p| DomainEvent::Payment(t, p))
            }),
            DELIVERY_EVENTS => DeliveryEventType::parse(event_type).map(|t| {
                serde_json::from_str(&message.payload).map(|d| DomainEvent::Delivery(t, d))
            }),
            other => {
                return Err(OrderSystemError::Malformed(format!(
                    "unknown topic {other}"
                )));
            }
        }
        .ok_or_else(|| {
            OrderSystemError::Malformed(format!(
                "unknown event type {event_type:?} on {}",
                message.topic
            ))
        })?
        .map_err(bad_payload)?;
        if event.order_id() != message.key {
            return Err(OrderSystemError::Malformed(format!(
                "key {:?} is not the event's order id {:?}",
                message.key,
                event.order_id()
            )));
        }
        if event.version() < 1 {
            return Err(OrderSystemError::Malformed(format!(
                "version must be at least 1, got {}",
                event.version()
            )));
        }
        Ok(event)
    }

    /// The aggregate version after this event.
    pub fn version(&self) -> i64 {
        match self {
            DomainEvent::Order(_, o) => o.version,
            DomainEvent::Payment(_, p) => p.version,
            DomainEvent::Delivery(_, d) => d.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::CreateOrder;

    fn created() -> DomainEvent {
        let (o, t) = Order::create(
            "o-1".into(),
            CreateOrder {
                customer_id: "c".into(),
                product_id: "p".into(),
                quantity: 1,
                amount_cents: 10,
                shipping_address: "a".into(),
            },
        )
        .unwrap();
        DomainEvent::Order(t, o)
    }

    #[test]
    fn round_trips_through_an_envelope() {
        let e = created();
        let m = e.to_envelope();
        assert_eq!(m.topic, ORDER_EVENTS);
        assert_eq!(m.key, "o-1");
        assert_eq!(m.event_type(), Some("OrderCreated"));
        assert_eq!(m.header(AGGREGATE_TYPE), Some("Order"));
        assert!(m.payload.contains("\"customerId\":\"c\""), "{}", m.payload);
        assert!(
            m.payload.contains("\"status\":\"PENDING\""),
            "{}",
            m.payload
        );
        assert_eq!(DomainEvent::decode(&m).unwrap(), e);
    }

    #[test]
    fn refuses_unknown_type_bad_payload_and_wrong_key() {
        let good = created().to_envelope();
        let mut m = good.clone();
        m.headers.insert(EVENT_TYPE.into(), "OrderExploded".into());
        assert!(
            matches!(DomainEvent::decode(&m), Err(OrderSystemError::Malformed(r)) if r.contains("unknown event type"))
        );
        let mut m = good.clone();
        m.payload = "{\"orderId\":".into();
        assert!(matches!(
            DomainEvent::decode(&m),
            Err(OrderSystemError::Malformed(_))
        ));
        let mut m = good.clone();
        m.key = "o-2".into();
        assert!(
            matches!(DomainEvent::decode(&m), Err(OrderSystemError::Malformed(r)) if r.contains("key"))
        );
        let mut m = good;
        m.headers.remove(EVENT_TYPE);
        assert!(DomainEvent::decode(&m).is_err());
    }
}
