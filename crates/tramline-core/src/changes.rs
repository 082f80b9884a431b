//! A feed of the keys a consumer has just changed, for live displays such as the web console.
//!
//! The consumer publishes a batch's keys after its transaction committed, and only while
//! someone listens, so a feed nobody reads costs one atomic load per batch. Publishing never
//! waits: a listener that falls more than the feed's capacity behind misses changes and is
//! told so ([`tokio::sync::broadcast::error::RecvError::Lagged`]), and then reads the state
//! afresh instead.

use std::sync::Arc;
use tokio::sync::broadcast;

/// Batches of changed keys a consumer publishes kept for a slow listener, by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// The keys changed by one committed batch.
pub type ChangedKeys = Arc<[String]>;

/// A broadcast of the keys a consumer changed, batch by batch (see the module).
///
/// ```
/// use tramline_core::changes::ChangeFeed;
///
/// let feed = ChangeFeed::default();
/// assert!(!feed.listening()); // nobody listens: the consumer does not even collect its keys
/// let mut changes = feed.subscribe();
/// feed.publish(vec!["order-1".to_owned(), "order-2".to_owned()]);
/// let keys = changes.try_recv().expect("published");
/// assert_eq!(&keys[..], ["order-1", "order-2"]);
/// ```
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<ChangedKeys>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed::new(DEFAULT_CAPACITY)
    }
}

impl ChangeFeed {
    /// A feed keeping up to `capacity` batches for a slow listener (at least one).
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        ChangeFeed { sender }
    }

    /// Whether anyone listens: a consumer collects its keys only then.
    pub fn listening(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Sends one committed batch's changed keys to every listener (nothing when empty).
    pub fn publish(&self, keys: Vec<String>) {
        if !keys.is_empty() {
            // An error only says that nobody listens any more.
            let _ = self.sender.send(keys.into());
        }
    }

    /// A listener of the batches published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ChangedKeys> {
        self.sender.subscribe()
    }
}
