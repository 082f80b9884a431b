//! Checks the view against the services' own tables: the source of truth.

use super::OrderStatusRow;
use crate::domain::delivery::Delivery;
use crate::domain::order::Order;
use crate::domain::payment::Payment;
use crate::error::Result;
use crate::events::DomainEvent;
use crate::services::delivery::DeliveryService;
use crate::services::order::OrderService;
use crate::services::payment::PaymentService;
use crate::view::OrderStatusQuery;
use serde::Serialize;
use std::collections::HashMap;

/// What the comparison found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Orders in the order service.
    pub orders: usize,
    /// Rows in the view.
    pub view_rows: usize,
    /// Orders whose row is missing, or has any column different from the sources, plus rows
    /// for orders that do not exist.
    pub mismatched_rows: usize,
    /// Orders without a view row.
    pub missing_rows: usize,
    /// A source's columns holding an older version than the source has (or none at all): a
    /// write that was lost or overwritten by an older copy.
    pub lost_updates: usize,
    /// A source's columns at the source's version but with different values.
    pub corrupt_columns: usize,
    /// Example order ids of mismatched rows, for a human to look at.
    pub examples: Vec<String>,
}

impl Verification {
    /// Whether every row matches its sources exactly.
    pub fn is_correct(&self) -> bool {
        self.mismatched_rows == 0 && self.view_rows == self.orders
    }
}

/// How many example ids a verification keeps.
const EXAMPLES: usize = 5;

/// One way a view row differs from what the services' tables imply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The order.
    pub order_id: String,
    /// `missing` (no row for an order), `extra` (a row for no order), `stale` (a source's
    /// version older than the source's, or absent) or `wrong` (a value that differs).
    pub kind: &'static str,
    /// The column (camelCase, as the API names it), for `stale` and `wrong`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// What the services imply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<serde_json::Value>,
    /// What the view holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<serde_json::Value>,
}

/// Every column where `found` differs from `expected`.
fn column_differences(
    expected: &OrderStatusRow,
    found: &OrderStatusRow,
    out: &mut dyn FnMut(Difference),
) {
    let as_map = |row: &OrderStatusRow| match serde_json::to_value(row) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (expected_map, found_map) = (as_map(expected), as_map(found));
    for (column, want) in &expected_map {
        let got = found_map.get(column).unwrap_or(&serde_json::Value::Null);
        if got == want {
            continue;
        }
        let older = match (want.as_i64(), got.as_i64()) {
            (Some(w), Some(g)) => g < w,
            (Some(_), None) => true,
            _ => false,
        };
        let kind = if column.ends_with("Version") && older {
            "stale"
        } else {
            "wrong"
        };
        out(Difference {
            order_id: expected.order_id.clone(),
            kind,
            column: Some(column.clone()),
            expected: Some(want.clone()),
            found: Some(got.clone()),
        });
    }
}

/// Compares every view row with what the three services hold.
pub fn verify(
    orders: Vec<Order>,
    payments: Vec<Payment>,
    deliveries: Vec<Delivery>,
    rows: Vec<OrderStatusRow>,
) -> Verification {
    verify_each(orders, payments, deliveries, rows, &mut |_| {})
}

/// [`verify`], handing every difference to `out` as it is found.
pub fn verify_each(
    orders: Vec<Order>,
    payments: Vec<Payment>,
    deliveries: Vec<Delivery>,
    rows: Vec<OrderStatusRow>,
    out: &mut dyn FnMut(Difference),
) -> Verification {
    let mut v = Verification {
        orders: orders.len(),
        view_rows: rows.len(),
        ..Verification::default()
    };
    let mut payments: HashMap<String, Payment> = payments
        .into_iter()
        .map(|p| (p.order_id.clone(), p))
        .collect();
    let mut deliveries: HashMap<String, Delivery> = deliveries
        .into_iter()
        .map(|d| (d.order_id.clone(), d))
        .collect();
    let mut rows: HashMap<String, OrderStatusRow> =
        rows.into_iter().map(|r| (r.order_id.clone(), r)).collect();

    for order in orders {
        let id = order.order_id.clone();
        let Some(row) = rows.remove(&id) else {
            v.missing_rows += 1;
            v.mismatch(&id);
            out(Difference {
                order_id: id,
                kind: "missing",
                column: None,
                expected: None,
                found: None,
            });
            continue;
        };
        let mut expected = OrderStatusRow {
            order_id: id.clone(),
            ..OrderStatusRow::default()
        };
        let mut sources = vec![(
            row.order_version,
            order.version,
            DomainEvent::Order(crate::domain::order::OrderEventType::Created, order),
        )];
        if let Some(p) = payments.remove(&id) {
            sources.push((
                row.payment_version,
                p.version,
                DomainEvent::Payment(crate::domain::payment::PaymentEventType::Created, p),
            ));
        }
        if let Some(d) = deliveries.remove(&id) {
            sources.push((
                row.delivery_version,
                d.version,
                DomainEvent::Delivery(crate::domain::delivery::DeliveryEventType::Created, d),
            ));
        }
        for (_, _, source) in &sources {
            expected.set_from(source);
        }
        for (seen, truth, _) in &sources {
            match seen {
                Some(seen) if seen == truth => {}
                _ => v.lost_updates += 1,
            }
        }
        if row != expected {
            column_differences(&expected, &row, out);
            let all_versions_right = sources.iter().all(|(seen, truth, _)| *seen == Some(*truth));
            if all_versions_right {
                v.corrupt_columns += 1;
            }
            v.mismatch(&id);
        }
    }
    // Rows for orders the order service does not have.
    let mut extra: Vec<String> = rows.into_keys().collect();
    extra.sort_unstable();
    for id in extra {
        v.mismatch(&id);
        out(Difference {
            order_id: id,
            kind: "extra",
            column: None,
            expected: None,
            found: None,
        });
    }
    v
}

/// Orders compared per page by [`verify_stores`].
pub const PAGE: u32 = 5000;

/// Compares the whole view with the services' tables, a page of orders at a time, so memory
/// stays flat however many orders there are.
pub async fn verify_stores(
    orders: &OrderService,
    payments: &PaymentService,
    deliveries: &DeliveryService,
    view: &OrderStatusQuery,
) -> Result<Verification> {
    verify_stores_each(orders, payments, deliveries, view, &mut |_| {}).await
}

/// [`verify_stores`], handing every difference to `out` as it is found (in order id order
/// within each page), so a caller can print them all in bounded memory.
pub async fn verify_stores_each(
    orders: &OrderService,
    payments: &PaymentService,
    deliveries: &DeliveryService,
    view: &OrderStatusQuery,
    out: &mut (dyn FnMut(Difference) + Send),
) -> Result<Verification> {
    let mut total = Verification::default();
    let mut after = String::new();
    loop {
        let page = orders.page_after(&after, PAGE).await?;
        // The last page also takes every view row past the last order: rows without an order.
        let upto = page.last().map(|o| o.order_id.clone());
        let part = verify_each(
            page,
            payments.for_orders_in(&after, upto.as_deref()).await?,
            deliveries.for_orders_in(&after, upto.as_deref()).await?,
            view.rows_in(&after, upto.as_deref()).await?,
            out,
        );
        total.add(part);
        match upto {
            Some(last) => after = last,
            None => return Ok(total),
        }
    }
}

impl Verification {
    fn add(&mut self, other: Verification) {
        self.orders += other.orders;
        self.view_rows += other.view_rows;
        self.mismatched_rows += other.mismatched_rows;
        self.missing_rows += other.missing_rows;
        self.lost_updates += other.lost_updates;
        self.corrupt_columns += other.corrupt_columns;
        let room = EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }

    fn mismatch(&mut self, id: &str) {
        self.mismatched_rows += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(id.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::CreateOrder;

    fn order(id: &str) -> Order {
        Order::create(
            id.into(),
            CreateOrder {
                customer_id: "c".into(),
                product_id: "p".into(),
                quantity: 1,
                amount_cents: 5,
                shipping_address: "a".into(),
            },
        )
        .unwrap()
        .0
    }

    fn row_for(o: &Order, p: Option<&Payment>) -> OrderStatusRow {
        let mut r = OrderStatusRow {
            order_id: o.order_id.clone(),
            ..Default::default()
        };
        r.set_from(&DomainEvent::Order(
            crate::domain::order::OrderEventType::Created,
            o.clone(),
        ));
        if let Some(p) = p {
            r.set_from(&DomainEvent::Payment(
                crate::domain::payment::PaymentEventType::Created,
                p.clone(),
            ));
        }
        r
    }

    #[test]
    fn a_matching_view_is_correct() {
        let o = order("o-1");
        let (p, _) = Payment::for_order("p-1".into(), "o-1".into(), 5);
        let v = verify(
            vec![o.clone()],
            vec![p.clone()],
            vec![],
            vec![row_for(&o, Some(&p))],
        );
        assert!(v.is_correct(), "{v:?}");
    }

    #[test]
    fn a_lost_payment_column_is_a_lost_update() {
        let o = order("o-1");
        let (mut p, _) = Payment::for_order("p-1".into(), "o-1".into(), 5);
        let stale = row_for(&o, Some(&p));
        p.approve().unwrap();
        let v = verify(vec![o.clone()], vec![p], vec![], vec![stale]);
        assert_eq!((v.mismatched_rows, v.lost_updates), (1, 1));
        assert!(!v.is_correct());
        let v = verify(
            vec![o.clone()],
            vec![Payment::for_order("p".into(), "o-1".into(), 5).0],
            vec![],
            vec![row_for(&o, None)],
        );
        assert_eq!(v.lost_updates, 1, "a payment never written is lost too");
    }

    #[test]
    fn missing_and_extra_rows_are_mismatches() {
        let o = order("o-1");
        let ghost = order("o-2");
        let v = verify(vec![o], vec![], vec![], vec![row_for(&ghost, None)]);
        assert_eq!((v.missing_rows, v.mismatched_rows), (1, 2));
    }

    #[test]
    fn same_version_different_value_is_corruption() {
        let o = order("o-1");
        let mut r = row_for(&o, None);
        r.customer_id = Some("someone else".into());
        let v = verify(vec![o], vec![], vec![], vec![r]);
        assert_eq!(
            (v.corrupt_columns, v.lost_updates, v.mismatched_rows),
            (1, 0, 1)
        );
    }
}
