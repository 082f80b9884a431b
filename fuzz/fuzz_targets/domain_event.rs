//! A message of the order system (`@topic`, default `order-events`; `@key`; headers such as
//! `event-type: OrderCreated`; then the payload) decoded as a domain event
//! (`DomainEvent::decode`), as each service and the naive view do.
//!
//! Checks: decoding never panics; a decoded event is one the domain could have emitted: its
//! key is its order id, its snapshot's status is the one its event type leaves the aggregate
//! in, a created aggregate is at version 1 and a changed one past it, its ids are ids the
//! stores hold and an order's values pass the order's own checks; and it round-trips through
//! `to_envelope`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tramline_fuzz::Framed;
use tramline_orders::domain::delivery::{DeliveryEventType as D, DeliveryStatus as DS};
use tramline_orders::domain::order::{CreateOrder, OrderEventType as O, OrderStatus as OS};
use tramline_orders::domain::payment::{PaymentEventType as P, PaymentStatus as PS};
use tramline_orders::events::DomainEvent;

fuzz_target!(|data: &[u8]| {
    let message = Framed::parse(data).envelope("order-events");
    let Ok(event) = DomainEvent::decode(&message) else {
        return;
    };
    assert_eq!(event.order_id(), message.key);
    if let Err(why) = emitted_by_the_domain(&event) {
        panic!("decoded an event the domain never emits ({why}): {event:?}");
    }
    let again = event.to_envelope();
    match DomainEvent::decode(&again) {
        Ok(back) => assert_eq!(back, event, "through {again:?}"),
        Err(e) => panic!("{event:?} as {again:?} does not decode: {e}"),
    }
});

/// Why `event` is not one the order system's state machines emit, if it is not.
fn emitted_by_the_domain(event: &DomainEvent) -> Result<(), String> {
    let (created, status_ok, ids) = match event {
        DomainEvent::Order(t, o) => {
            CreateOrder {
                customer_id: o.customer_id.clone(),
                product_id: o.product_id.clone(),
                quantity: o.quantity,
                amount_cents: o.amount_cents,
                shipping_address: o.shipping_address.clone(),
            }
            .validate()
            .map_err(|e| e.to_string())?;
            let status = match t {
                O::Created => OS::Pending,
                O::Approved => OS::Approved,
                O::Rejected => OS::Rejected,
                O::Cancelled => OS::Cancelled,
                O::Completed => OS::Completed,
            };
            (*t == O::Created, status == o.status, vec![&o.order_id])
        }
        DomainEvent::Payment(t, p) => {
            if p.amount_cents <= 0 {
                return Err("amount".into());
            }
            let status = match t {
                P::Created => PS::Pending,
                P::Approved => PS::Approved,
                P::Rejected => PS::Rejected,
                P::Cancelled => PS::Cancelled,
            };
            (
                *t == P::Created,
                status == p.status,
                vec![&p.payment_id, &p.order_id],
            )
        }
        DomainEvent::Delivery(t, d) => {
            let status = match t {
                D::Created => DS::Ready,
                D::Started => DS::Started,
                D::Completed => DS::Completed,
            };
            (
                *t == D::Created,
                status == d.status,
                vec![&d.delivery_id, &d.order_id],
            )
        }
    };
    if !status_ok {
        return Err("status".into());
    }
    if created != (event.version() == 1) || event.version() < 1 {
        return Err("version".into());
    }
    // What the stores' id columns hold (VARCHAR(36) CHARACTER SET ascii on MariaDB).
    for id in ids {
        if id.is_empty() || id.len() > 36 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("id {id:?}"));
        }
    }
    Ok(())
}
