//! Per-destination wake-ups: intake rings after it commits new deliveries, a replay after it
//! re-queues them, and attempts when they finish, so a lane does not wait for its poll interval.
//!
//! It has a module of its own, below intake, admin and delivery, so that the ringers need not
//! import the lanes they ring.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

/// One bell per destination, by name.
#[derive(Default)]
pub struct Wakeups {
    lanes: HashMap<String, Arc<Notify>>,
}

impl Wakeups {
    pub fn new<'a>(destinations: impl IntoIterator<Item = &'a str>) -> Wakeups {
        let lanes = destinations
            .into_iter()
            .map(|name| (name.to_owned(), Arc::new(Notify::new())))
            .collect();
        Wakeups { lanes }
    }

    pub fn wake(&self, destination: &str) {
        if let Some(notify) = self.lanes.get(destination) {
            notify.notify_one();
        }
    }

    /// The bell a destination's lane waits on (a fresh one for an unknown destination).
    pub fn lane(&self, destination: &str) -> Arc<Notify> {
        self.lanes.get(destination).cloned().unwrap_or_default()
    }
}
