//! The delivery: created READY when a payment is approved, then STARTED and COMPLETED by
//! command.

use super::{named_enum, refuse};
use crate::error::Result;
use serde::{Deserialize, Serialize};

named_enum! {
    /// Where a delivery is in its lifecycle.
    DeliveryStatus {
        /// Waiting to be picked up.
        Ready = "READY",
        /// On its way.
        Started = "STARTED",
        /// Delivered.
        Completed = "COMPLETED",
    }
}

named_enum! {
    /// Events a delivery emits, one per state change.
    DeliveryEventType {
        /// A new delivery.
        Created = "DeliveryCreated",
        /// Picked up.
        Started = "DeliveryStarted",
        /// Delivered.
        Completed = "DeliveryCompleted",
    }
}

impl DeliveryEventType {
    /// The status this event leaves its delivery in.
    pub fn status(self) -> DeliveryStatus {
        match self {
            DeliveryEventType::Created => DeliveryStatus::Ready,
            DeliveryEventType::Started => DeliveryStatus::Started,
            DeliveryEventType::Completed => DeliveryStatus::Completed,
        }
    }
}

/// A delivery's full state; also the payload of every delivery event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The delivery id.
    pub delivery_id: String,
    /// The order it delivers (the events' partition key).
    pub order_id: String,
    /// Lifecycle status.
    pub status: DeliveryStatus,
    /// Incremented by every change, starting at 1.
    pub version: i64,
}

impl Delivery {
    /// A delivery for an approved payment: READY, version 1.
    pub fn for_order(delivery_id: String, order_id: String) -> (Delivery, DeliveryEventType) {
        let d = Delivery {
            delivery_id,
            order_id,
            status: DeliveryEventType::Created.status(),
            version: 1,
        };
        (d, DeliveryEventType::Created)
    }

    /// Starts a READY delivery.
    pub fn start(&mut self) -> Result<DeliveryEventType> {
        self.advance(DeliveryStatus::Ready, DeliveryEventType::Started, "start")
    }

    /// Completes a STARTED delivery.
    pub fn complete(&mut self) -> Result<DeliveryEventType> {
        self.advance(
            DeliveryStatus::Started,
            DeliveryEventType::Completed,
            "complete",
        )
    }

    fn advance(
        &mut self,
        from: DeliveryStatus,
        event: DeliveryEventType,
        action: &'static str,
    ) -> Result<DeliveryEventType> {
        if self.status != from {
            return Err(refuse(
                "delivery",
                &self.delivery_id,
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

    #[test]
    fn given_ready_when_started_and_completed_then_completed_version_3() {
        let (mut d, ev) = Delivery::for_order("d-1".into(), "o-1".into());
        assert_eq!(ev, DeliveryEventType::Created);
        assert_eq!(d.start().unwrap(), DeliveryEventType::Started);
        assert_eq!(d.complete().unwrap(), DeliveryEventType::Completed);
        assert_eq!((d.status, d.version), (DeliveryStatus::Completed, 3));
    }

    #[test]
    fn given_ready_when_completed_then_refused() {
        let (mut d, _) = Delivery::for_order("d-1".into(), "o-1".into());
        assert!(matches!(
            d.complete(),
            Err(OrderSystemError::IllegalTransition {
                action: "complete",
                ..
            })
        ));
        assert_eq!(d.version, 1);
    }
}
