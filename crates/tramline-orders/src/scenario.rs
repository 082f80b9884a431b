//! The demo's customers and back office: who cancels, whose payment is rejected, and an
//! operator that approves payments and ships deliveries as their events arrive.
//!
//! An order's fate is a pure function of its id, so a run needs no bookkeeping of its own and
//! a verifier can tell what each order should have become.

use crate::domain::delivery::DeliveryEventType;
use crate::domain::payment::PaymentEventType;
use crate::events::DomainEvent;
use crate::services::delivery::{DeliveryService, DeliveryStep};
use crate::services::payment::{Decision, PaymentService};
use crate::OrderSystemError;
use tramline_core::partitioner::murmur2;
use tramline_core::ports::{Applied, Handler};
use tramline_core::{Error, Record};

/// What happens to an order in the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Paid, delivered, completed.
    Complete,
    /// The payment is rejected.
    Reject,
    /// The customer cancels right after placing it.
    Cancel,
}

/// Shares of orders that are rejected and cancelled, in percent.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Percent of orders whose payment is rejected.
    pub reject_percent: u32,
    /// Percent of orders cancelled by the customer.
    pub cancel_percent: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            reject_percent: 10,
            cancel_percent: 5,
        }
    }
}

impl Scenario {
    /// The fate of the order with this id.
    pub fn fate(&self, order_id: &str) -> Fate {
        let bucket = (murmur2(order_id.as_bytes()) as u32) % 100;
        if bucket < self.cancel_percent {
            Fate::Cancel
        } else if bucket < self.cancel_percent + self.reject_percent {
            Fate::Reject
        } else {
            Fate::Complete
        }
    }
}

/// The back office: decides payments and moves deliveries along, by command, as their events
/// arrive. Its commands are idempotent by state: a redelivered event meets a payment or
/// delivery that already moved on, and the refusal is the proof it was done.
pub struct Operator {
    scenario: Scenario,
    payments: PaymentService,
    deliveries: DeliveryService,
}

impl Operator {
    /// An operator acting on the two services by `scenario`.
    pub fn new(scenario: Scenario, payments: PaymentService, deliveries: DeliveryService) -> Self {
        Operator {
            scenario,
            payments,
            deliveries,
        }
    }
}

impl Handler for Operator {
    /// Acts on a batch in two transactions: one for the payment decisions, one for the
    /// delivery steps.
    async fn apply(&self, batch: &[Record]) -> Result<Applied, Error> {
        let mut decisions = Vec::new();
        let mut steps = Vec::new();
        // Which record asked for each command, to blame the right one.
        let (mut decided_by, mut stepped_by) = (Vec::new(), Vec::new());
        let mut out = Applied::default();
        for record in batch {
            match DomainEvent::decode(&record.envelope).map_err(|e| e.into_core(record))? {
                DomainEvent::Payment(PaymentEventType::Created, p) => {
                    let decision = match self.scenario.fate(&p.order_id) {
                        Fate::Complete => Decision::Approve,
                        Fate::Reject => Decision::Reject,
                        Fate::Cancel => {
                            out.applied += 1;
                            continue;
                        }
                    };
                    decisions.push((p.payment_id, decision));
                    decided_by.push(record);
                }
                DomainEvent::Delivery(DeliveryEventType::Created, d) => {
                    steps.push((d.delivery_id.clone(), DeliveryStep::Start));
                    steps.push((d.delivery_id, DeliveryStep::Complete));
                    stepped_by.extend([record, record]);
                }
                _ => out.applied += 1,
            }
        }
        let mut outcomes: Vec<(&Record, Result<(), OrderSystemError>)> = Vec::new();
        if !decisions.is_empty() {
            let decided = self
                .payments
                .decide_many(&decisions)
                .await
                .map_err(|e| e.into_core(&batch[0]))?;
            outcomes.extend(
                decided_by
                    .into_iter()
                    .zip(decided.into_iter().map(|r| r.map(|_| ()))),
            );
        }
        if !steps.is_empty() {
            let stepped = self
                .deliveries
                .advance_many(&steps)
                .await
                .map_err(|e| e.into_core(&batch[0]))?;
            // Count each delivery once, by its completion (the second step).
            outcomes.extend(
                stepped_by
                    .into_iter()
                    .zip(stepped.into_iter().map(|r| r.map(|_| ())))
                    .skip(1)
                    .step_by(2),
            );
        }
        for (record, outcome) in outcomes {
            match outcome {
                Ok(()) => out.applied += 1,
                // Already decided or delivered: this is a redelivery.
                Err(OrderSystemError::IllegalTransition { .. }) => out.duplicates += 1,
                Err(e) => return Err(e.into_core(record)),
            }
        }
        Ok(out)
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        // The operator has no database of its own; a message it cannot act on is a bug in the
        // demo, so it stops the run with the reason rather than parking.
        Err(Error::poison(
            &record.envelope,
            tramline_core::error::sentence(reason),
        ))
    }
}
