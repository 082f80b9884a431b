//! The Order Status View: one denormalized row per order, fed by the three services' events.
//!
//! [`projection::OrderStatusProjection`] is tramline's fix for the seed's two bugs: each source
//! writes only its own columns, in one upsert guarded by that source's version.
//! [`naive::NaiveProjection`] is the seed's read-then-write-everything, kept as the baseline;
//! [`whole_row::WholeRowProjection`] a JDBC sink's unguarded upsert, the second baseline.

pub mod naive;
pub mod projection;
pub mod verify;
pub mod whole_row;

use crate::error::Result;
use crate::services::ServiceDb;
use serde::{Deserialize, Serialize};
use tramline_sql::{DbOptions, Dialect, Stmt};

pub(crate) const STORE: &str = "order-status-view";

/// The view's consumer group unless configured otherwise; it reads every topic
/// ([`crate::events::ALL_TOPICS`]).
pub const GROUP: &str = STORE;

/// `(camelCase JSON key, column)` of every view column: the object `OrderStatusRow`
/// deserialises from.
const FIELDS: &[(&str, &str)] = &[
    ("orderId", "order_id"),
    ("orderStatus", "order_status"),
    ("customerId", "customer_id"),
    ("productId", "product_id"),
    ("quantity", "quantity"),
    ("amountCents", "amount_cents"),
    ("shippingAddress", "shipping_address"),
    ("orderVersion", "order_version"),
    ("paymentId", "payment_id"),
    ("paymentStatus", "payment_status"),
    ("paymentVersion", "payment_version"),
    ("deliveryId", "delivery_id"),
    ("deliveryStatus", "delivery_status"),
    ("deliveryVersion", "delivery_version"),
];

/// `(JSON key, column)` of when each source last changed the row: the detail's extra fields.
const CHANGED_AT: &[(&str, &str)] = &[
    ("orderChangedAt", "order_changed_at"),
    ("paymentChangedAt", "payment_changed_at"),
    ("deliveryChangedAt", "delivery_changed_at"),
];

/// A read of view rows with `fields`, folded into one JSON array, up to `WHERE`.
fn select_of(dialect: Dialect, fields: &[(&str, &str)]) -> Stmt {
    Stmt::new(
        dialect,
        &format!(
            "SELECT {} FROM order_status_view WHERE ",
            dialect.json_objects(fields)
        ),
    )
}

/// A read of view rows folded into one JSON array, up to `WHERE`.
fn select(dialect: Dialect) -> Stmt {
    select_of(dialect, FIELDS)
}

/// Migrations of the view's table.
pub fn migrations(dialect: Dialect) -> sqlx::migrate::Migrator {
    match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite/view"),
        Dialect::MySql => sqlx::migrate!("./migrations/mysql/view"),
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres/view"),
    }
}

/// Opens the view's database at `url` (its table, inbox and parked messages).
pub async fn open(url: &str, options: &DbOptions) -> Result<ServiceDb> {
    ServiceDb::open(url, options, migrations).await
}

/// One row of the view. `None` columns belong to a source not seen yet for this order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatusRow {
    /// The order id (primary key).
    pub order_id: String,
    /// Order status (`PENDING`, `APPROVED`, …).
    pub order_status: Option<String>,
    /// Customer.
    pub customer_id: Option<String>,
    /// Product.
    pub product_id: Option<String>,
    /// Quantity.
    pub quantity: Option<i64>,
    /// Amount in cents.
    pub amount_cents: Option<i64>,
    /// Shipping address.
    pub shipping_address: Option<String>,
    /// Version of the order snapshot the order columns hold.
    pub order_version: Option<i64>,
    /// Payment id.
    pub payment_id: Option<String>,
    /// Payment status.
    pub payment_status: Option<String>,
    /// Version of the payment snapshot the payment columns hold.
    pub payment_version: Option<i64>,
    /// Delivery id.
    pub delivery_id: Option<String>,
    /// Delivery status.
    pub delivery_status: Option<String>,
    /// Version of the delivery snapshot the delivery columns hold.
    pub delivery_version: Option<i64>,
}

impl OrderStatusRow {
    /// Sets the columns `event` owns to the values it carries.
    pub fn set_from(&mut self, event: &crate::events::DomainEvent) {
        use crate::events::DomainEvent;
        match event {
            DomainEvent::Order(_, o) => {
                self.order_status = Some(o.status.as_str().to_owned());
                self.customer_id = Some(o.customer_id.clone());
                self.product_id = Some(o.product_id.clone());
                self.quantity = Some(o.quantity);
                self.amount_cents = Some(o.amount_cents);
                self.shipping_address = Some(o.shipping_address.clone());
                self.order_version = Some(o.version);
            }
            DomainEvent::Payment(_, p) => {
                self.payment_id = Some(p.payment_id.clone());
                self.payment_status = Some(p.status.as_str().to_owned());
                self.payment_version = Some(p.version);
            }
            DomainEvent::Delivery(_, d) => {
                self.delivery_id = Some(d.delivery_id.clone());
                self.delivery_status = Some(d.status.as_str().to_owned());
                self.delivery_version = Some(d.version);
            }
        }
    }
}

/// One order's row with when each source last changed it: what `GET /order-status/{id}`
/// and the web console's live rows show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatusDetail {
    /// The row.
    #[serde(flatten)]
    pub row: OrderStatusRow,
    /// When the order's columns last changed: the creation time of the order event they hold,
    /// in milliseconds since the Unix epoch.
    pub order_changed_at: Option<i64>,
    /// When the payment's columns last changed (ms since the epoch).
    pub payment_changed_at: Option<i64>,
    /// When the delivery's columns last changed (ms since the epoch).
    pub delivery_changed_at: Option<i64>,
}

/// Which rows a search returns; every field set must match exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFilter {
    /// The order's status, e.g. `APPROVED`.
    pub order_status: Option<String>,
    /// The payment's status.
    pub payment_status: Option<String>,
    /// The delivery's status.
    pub delivery_status: Option<String>,
    /// The customer.
    pub customer_id: Option<String>,
}

/// Reads the view.
#[derive(Debug, Clone)]
pub struct OrderStatusQuery {
    db: ServiceDb,
}

impl OrderStatusQuery {
    /// Queries over the view's database.
    pub fn new(db: ServiceDb) -> Self {
        OrderStatusQuery { db }
    }

    /// The view's database.
    pub fn db(&self) -> &ServiceDb {
        &self.db
    }

    /// The row of one order, if the view has it.
    pub async fn get(&self, order_id: &str) -> Result<Option<OrderStatusRow>> {
        let db = &self.db.db;
        let mut stmt = select(db.dialect());
        stmt.push("order_id = ").bind(order_id);
        let rows: Vec<OrderStatusRow> = db.fetch_json(&stmt, STORE, "read row").await?;
        Ok(rows.into_iter().next())
    }

    /// The row of one order with when each source last changed it, if the view has it.
    pub async fn detail(&self, order_id: &str) -> Result<Option<OrderStatusDetail>> {
        let db = &self.db.db;
        let fields: Vec<(&str, &str)> = FIELDS.iter().chain(CHANGED_AT).copied().collect();
        let mut stmt = select_of(db.dialect(), &fields);
        stmt.push("order_id = ").bind(order_id);
        let rows: Vec<OrderStatusDetail> = db.fetch_json(&stmt, STORE, "read row").await?;
        Ok(rows.into_iter().next())
    }

    /// Up to `limit` rows matching `filter` with order ids after `after`, in order id order:
    /// one keyset page.
    pub async fn search(
        &self,
        filter: &StatusFilter,
        after: &str,
        limit: u32,
    ) -> Result<Vec<OrderStatusRow>> {
        let db = &self.db.db;
        let d = db.dialect();
        let mut stmt = Stmt::new(
            d,
            &format!(
                "SELECT {} FROM (SELECT * FROM order_status_view WHERE order_id > ",
                d.json_objects(FIELDS)
            ),
        );
        stmt.bind(after);
        let conditions = [
            ("order_status", filter.order_status.as_deref()),
            ("payment_status", filter.payment_status.as_deref()),
            ("delivery_status", filter.delivery_status.as_deref()),
            ("customer_id", filter.customer_id.as_deref()),
        ];
        for (column, value) in conditions {
            if let Some(value) = value {
                stmt.push(&format!(" AND {column} = ")).bind(value);
            }
        }
        stmt.push(" ORDER BY order_id LIMIT ")
            .bind(i64::from(limit))
            .push(") AS page");
        let mut rows: Vec<OrderStatusRow> = db.fetch_json(&stmt, STORE, "search rows").await?;
        rows.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
        Ok(rows)
    }

    /// Rows of orders with ids in (`after`, `upto`], in order id order.
    pub async fn rows_in(&self, after: &str, upto: Option<&str>) -> Result<Vec<OrderStatusRow>> {
        let db = &self.db.db;
        let mut stmt = select(db.dialect());
        stmt.push("order_id > ").bind(after);
        if let Some(upto) = upto {
            stmt.push(" AND order_id <= ").bind(upto);
        }
        let mut rows: Vec<OrderStatusRow> = db.fetch_json(&stmt, STORE, "read rows").await?;
        rows.sort_unstable_by(|a, b| a.order_id.cmp(&b.order_id));
        Ok(rows)
    }
}
