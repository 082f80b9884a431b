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
/// The longest id an event may carry: the stores' id columns hold 36 ASCII characters, a
/// UUID's text (`VARCHAR(36) CHARACTER SET ascii` on MariaDB).
pub const MAX_ID_LEN: usize = 36;

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
    /// payload that does not parse, a key that is not the payload's order id, or a snapshot
    /// the services never emit (see [`DomainEvent::check`]).
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
        event
            .check()
            .map_err(|why| OrderSystemError::Malformed(format!("{event_type} payload: {why}")))?;
        Ok(event)
    }

    /// Whether the event is one the services emit, or why not: its snapshot is in the status
    /// its event type leaves the aggregate in, at version 1 when created and past it after
    /// a change; its ids are ids the stores hold (1 to [`MAX_ID_LEN`] printable ASCII
    /// characters: a UUID's text, or shorter), and an order's values pass the checks placing
    /// it passed ([`Order::validate`]), a payment's amount is positive. Anything else comes
    /// from a foreign or broken producer and would be stored, or acted on, as it is.
    pub fn check(&self) -> std::result::Result<(), String> {
        let (status_matches, created, ids): (bool, bool, &[(&str, &str)]) = match self {
            DomainEvent::Order(t, o) => {
                o.validate().map_err(|e| e.to_string())?;
                (
                    t.status() == o.status,
                    *t == OrderEventType::Created,
                    &[("orderId", &o.order_id)],
                )
            }
            DomainEvent::Payment(t, p) => {
                if p.amount_cents <= 0 {
                    return Err(format!(
                        "amountCents must be positive, got {}",
                        p.amount_cents
                    ));
                }
                (
                    t.status() == p.status,
                    *t == PaymentEventType::Created,
                    &[("paymentId", &p.payment_id), ("orderId", &p.order_id)],
                )
            }
            DomainEvent::Delivery(t, d) => (
                t.status() == d.status,
                *t == DeliveryEventType::Created,
                &[("deliveryId", &d.delivery_id), ("orderId", &d.order_id)],
            ),
        };
        let held = |id: &str| {
            !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
        };
        if let Some((field, id)) = ids.iter().find(|(_, id)| !held(id)) {
            return Err(format!(
                "{field} {id:?} is not 1 to {MAX_ID_LEN} printable ASCII characters"
            ));
        }
        if !status_matches {
            return Err("its status is not the one its event type leaves".into());
        }
        let version = self.version();
        match (created, version) {
            (true, 1) => {}
            (true, _) => {
                return Err(format!(
                    "a created aggregate is at version 1, not {version}"
                ))
            }
            (false, 2..) => {}
            (false, _) => {
                return Err(format!(
                    "a changed aggregate is past version 1, not {version}"
                ))
            }
        }
        Ok(())
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

    /// Found by the fuzzer (fuzz/fuzz_targets/domain_event.rs): a snapshot no service emits
    /// decoded, and would have been stored or acted on as it was; here a delivery id of 37
    /// characters, which MariaDB's `VARCHAR(36)` id columns refuse at the insert.
    #[test]
    fn refuses_snapshots_the_services_never_emit() {
        let order_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let decode = |topic: &str, event_type: &str, payload: &str| {
            let m =
                Envelope::new(topic, order_id, payload.into()).with_header(EVENT_TYPE, event_type);
            DomainEvent::decode(&m).map_err(|e| e.to_string())
        };
        let found = decode(
            DELIVERY_EVENTS,
            "DeliveryCreated",
            r#"{"deliveryId":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f:4a69","orderId":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","status":"READY","version":1}"#,
        );
        assert!(
            found.as_ref().is_err_and(|e| e.contains("deliveryId")),
            "{found:?}"
        );
        let delivery = |id: &str, status: &str, version: i64| {
            format!(
                r#"{{"deliveryId":"{id}","orderId":"{order_id}","status":"{status}","version":{version}}}"#
            )
        };
        assert!(decode(
            DELIVERY_EVENTS,
            "DeliveryCreated",
            &delivery("d-1", "READY", 1)
        )
        .is_ok());
        for (event_type, payload, why) in [
            ("DeliveryCreated", delivery("", "READY", 1), "deliveryId"),
            ("DeliveryCreated", delivery("d 1", "READY", 1), "deliveryId"),
            ("DeliveryCreated", delivery("d-1", "COMPLETED", 1), "status"),
            ("DeliveryCreated", delivery("d-1", "READY", 2), "version 1"),
            (
                "DeliveryStarted",
                delivery("d-1", "STARTED", 1),
                "past version 1",
            ),
        ] {
            let found = decode(DELIVERY_EVENTS, event_type, &payload);
            assert!(
                found.as_ref().is_err_and(|e| e.contains(why)),
                "{payload}: {found:?}"
            );
        }
        let payment = format!(
            r#"{{"paymentId":"p-1","orderId":"{order_id}","amountCents":0,"status":"PENDING","version":1}}"#
        );
        let found = decode(PAYMENT_EVENTS, "PaymentCreated", &payment);
        assert!(
            found.as_ref().is_err_and(|e| e.contains("amountCents")),
            "{found:?}"
        );
        let order = format!(
            r#"{{"orderId":"{order_id}","customerId":"c","productId":"p","quantity":0,"amountCents":10,"shippingAddress":"a","status":"PENDING","version":1}}"#
        );
        let found = decode(ORDER_EVENTS, "OrderCreated", &order);
        assert!(
            found.as_ref().is_err_and(|e| e.contains("quantity")),
            "{found:?}"
        );
    }

    #[test]
    fn every_transition_leaves_the_status_its_event_names() {
        let DomainEvent::Order(_, mut o) = created() else {
            unreachable!("an order event")
        };
        assert_eq!(
            o.on_payment_approved().map(OrderEventType::status),
            Some(o.status)
        );
        let (mut p, t) = Payment::for_order("p-1".into(), "o-1".into(), 10);
        assert_eq!(t.status(), p.status);
        assert_eq!(
            p.reject().map(PaymentEventType::status).ok(),
            Some(p.status)
        );
        let (mut d, t) = Delivery::for_order("d-1".into(), "o-1".into());
        assert_eq!(t.status(), d.status);
        assert_eq!(
            d.start().map(DeliveryEventType::status).ok(),
            Some(d.status)
        );
        assert_eq!(
            d.complete().map(DeliveryEventType::status).ok(),
            Some(d.status)
        );
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
