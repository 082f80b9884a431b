//! Which offsets may be committed: the low watermark of each partition.
//!
//! Records of one partition are applied by different lanes and so finish out of order; an
//! offset may be committed only once every record before it has been applied, or a crash
//! would skip the unfinished ones. The tracker counts each delivery, so a record delivered
//! twice (a redelivery) is done only when both copies are.

use std::collections::{BTreeMap, HashMap};

/// In-flight offsets per (topic, partition) and the next offset that is safe to commit.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// topic → partition → state; keyed by topic first so lookups borrow the record's topic
    /// instead of allocating a key per record.
    partitions: HashMap<String, HashMap<i32, PartitionState>>,
}

#[derive(Debug, Default)]
struct PartitionState {
    /// offset → deliveries of it not yet applied.
    in_flight: BTreeMap<i64, u32>,
    /// One past the highest offset seen.
    next: i64,
    /// The last next-offset handed out for commit.
    committed: i64,
}

impl PartitionState {
    /// The first offset not yet applied: everything before it may be committed.
    fn watermark(&self) -> i64 {
        self.in_flight.keys().next().copied().unwrap_or(self.next)
    }

    /// Deliveries handed out and not yet finished.
    fn deliveries(&self) -> usize {
        self.in_flight.values().map(|&n| n as usize).sum()
    }
}

/// A commit the transport should make: consumption resumes at `next_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPosition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The first offset not yet applied.
    pub next_offset: i64,
}

impl OffsetTracker {
    /// Notes that a record was handed to a lane.
    pub fn started(&mut self, topic: &str, partition: i32, offset: i64) {
        if !self.partitions.contains_key(topic) {
            self.partitions.insert(topic.to_owned(), HashMap::new());
        }
        let state = self
            .partitions
            .get_mut(topic)
            .expect("inserted above")
            .entry(partition)
            .or_insert_with(|| PartitionState {
                in_flight: BTreeMap::new(),
                next: offset,
                committed: offset,
            });
        *state.in_flight.entry(offset).or_insert(0) += 1;
        state.next = state.next.max(offset + 1);
    }

    /// Notes that a record's effect has committed.
    pub fn finished(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(state) = self
            .partitions
            .get_mut(topic)
            .and_then(|p| p.get_mut(&partition))
        {
            if let Some(n) = state.in_flight.get_mut(&offset) {
                *n -= 1;
                if *n == 0 {
                    state.in_flight.remove(&offset);
                }
            }
        }
    }

    /// Positions that advanced since the last call: everything before them is applied.
    pub fn take_commits(&mut self) -> Vec<CommitPosition> {
        let mut out = Vec::new();
        for (topic, partitions) in &mut self.partitions {
            for (partition, state) in partitions.iter_mut() {
                let watermark = state.watermark();
                if watermark > state.committed {
                    state.committed = watermark;
                    out.push(CommitPosition {
                        topic: topic.clone(),
                        partition: *partition,
                        next_offset: watermark,
                    });
                }
            }
        }
        out
    }

    /// Deliveries of `topic`/`partition` handed out and not yet finished.
    pub fn in_flight_of(&self, topic: &str, partition: i32) -> usize {
        self.partitions
            .get(topic)
            .and_then(|p| p.get(&partition))
            .map_or(0, PartitionState::deliveries)
    }

    /// Forgets a partition this member gave up, returning its position if it advanced since
    /// the last commit. Records of it still in flight no longer hold anything back.
    pub fn release(&mut self, topic: &str, partition: i32) -> Option<CommitPosition> {
        let state = self.partitions.get_mut(topic)?.remove(&partition)?;
        let watermark = state.watermark();
        (watermark > state.committed).then(|| CommitPosition {
            topic: topic.to_owned(),
            partition,
            next_offset: watermark,
        })
    }

    /// Records handed out and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .flat_map(HashMap::values)
            .map(PartitionState::deliveries)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.started("t", 0, o);
        }
        t.finished("t", 0, 12);
        t.finished("t", 0, 13);
        assert!(t.take_commits().is_empty(), "10 is still in flight");
        t.finished("t", 0, 10);
        let c = t.take_commits();
        assert_eq!(c[0].next_offset, 11);
        t.finished("t", 0, 11);
        t.finished("t", 0, 14);
        assert_eq!(t.take_commits()[0].next_offset, 15);
        assert!(t.take_commits().is_empty(), "nothing new to commit");
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_released_partition_hands_back_its_watermark_once() {
        let mut t = OffsetTracker::default();
        for o in 0..3 {
            t.started("t", 0, o);
        }
        t.started("t", 1, 7);
        t.finished("t", 0, 0);
        t.finished("t", 0, 1);
        assert_eq!(t.in_flight_of("t", 0), 1);
        let released = t.release("t", 0).expect("offsets 0 and 1 are done");
        assert_eq!(released.next_offset, 2, "offset 2 is still in flight");
        assert_eq!(t.in_flight_of("t", 0), 0);
        assert!(t.release("t", 0).is_none(), "already released");
        t.finished("t", 0, 2);
        assert!(t.take_commits().iter().all(|c| c.partition != 0));
        assert_eq!(t.in_flight_of("t", 1), 1, "other partitions are kept");
    }

    #[test]
    fn a_redelivered_offset_must_finish_twice() {
        let mut t = OffsetTracker::default();
        t.started("t", 1, 0);
        t.started("t", 1, 0);
        t.finished("t", 1, 0);
        assert!(t.take_commits().is_empty());
        t.finished("t", 1, 0);
        assert_eq!(t.take_commits()[0].next_offset, 1);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever order records finish in, a commit never passes a record still in flight,
        /// and once all finished the commit reaches the end.
        #[test]
        fn commits_never_pass_an_unfinished_record(order in Just((0..40i64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut t = OffsetTracker::default();
            for o in 0..40 {
                t.started("t", 0, o);
            }
            let mut done = std::collections::BTreeSet::new();
            let mut committed = 0;
            for o in order {
                t.finished("t", 0, o);
                done.insert(o);
                for c in t.take_commits() {
                    prop_assert!(c.next_offset > committed);
                    committed = c.next_offset;
                }
                let first_unfinished = (0..40).find(|x| !done.contains(x)).unwrap_or(40);
                prop_assert_eq!(committed, first_unfinished);
            }
            prop_assert_eq!(committed, 40);
        }
    }
}
