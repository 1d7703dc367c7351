//! How the view's consumers ack: all at once. A view consumer acks with
//! JetStream's `AckPolicy::All`, where one ack settles every delivery up to
//! its stream sequence. The view's writes finish out of order (an order is
//! written when it settles, or after a linger), so each consumer keeps an
//! [`AckFloor`]: the deliveries taken and not yet settled, and the highest
//! settled delivery below which nothing waits. A flush every
//! [`ACK_EVERY`] acks that one delivery, in place of one ack per event.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;

/// How often a consumer's settled deliveries are acked.
pub(crate) const ACK_EVERY: Duration = Duration::from_millis(100);

/// One view consumer's deliveries not yet acked (`M`: a delivery, which
/// tests replace with a plain value).
#[derive(Debug)]
pub(crate) struct AckFloor<M = jetstream::Message> {
    /// By stream sequence, the deliveries taken: `None` while what they
    /// tell is unsaved, the delivery itself once settled.
    taken: BTreeMap<u64, Option<M>>,
    /// The delivery to ack next: every one up to its sequence is settled.
    due: Option<M>,
}

impl<M> Default for AckFloor<M> {
    fn default() -> Self {
        Self {
            taken: BTreeMap::new(),
            due: None,
        }
    }
}

impl<M> AckFloor<M> {
    /// Notes a delivery of `sequence` taken (again, after a redelivery).
    pub(crate) fn take(&mut self, sequence: u64) {
        self.taken.insert(sequence, None);
    }

    /// Notes the delivery of `sequence` settled: what it tells is stored,
    /// or it can never be (a dead letter). A sequence not taken (the floor
    /// was cleared since) is left for its redelivery.
    pub(crate) fn settle(&mut self, sequence: u64, message: M) {
        if let Some(slot) = self.taken.get_mut(&sequence) {
            *slot = Some(message);
        }
        while let Some(first) = self.taken.first_entry() {
            if first.get().is_none() {
                break;
            }
            self.due = first.remove();
        }
    }

    /// The delivery whose ack settles every delivery up to it, once.
    pub(crate) fn take_due(&mut self) -> Option<M> {
        self.due.take()
    }

    /// Deliveries taken and not yet settled.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.taken.values().filter(|slot| slot.is_none()).count()
    }

    /// Forgets every delivery (its consumer is made again).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(sequence: u64) -> u64 {
        sequence
    }

    fn due_sequence(floor: &mut AckFloor<u64>) -> Option<u64> {
        floor.take_due()
    }

    #[test]
    fn the_due_delivery_is_the_highest_with_nothing_unsettled_below() {
        let mut floor = AckFloor::default();
        for sequence in 1..=5 {
            floor.take(sequence);
        }
        floor.settle(2, message(2));
        floor.settle(3, message(3));
        assert_eq!(due_sequence(&mut floor), None, "1 is not settled");
        floor.settle(1, message(1));
        assert_eq!(due_sequence(&mut floor), Some(3));
        assert_eq!(due_sequence(&mut floor), None, "acked once");
        floor.settle(5, message(5));
        assert_eq!(due_sequence(&mut floor), None, "4 is not settled");
        floor.settle(4, message(4));
        assert_eq!(due_sequence(&mut floor), Some(5));
        assert_eq!(floor.waiting(), 0);
    }

    #[test]
    fn a_redelivery_waits_again_and_a_sequence_not_taken_is_ignored() {
        let mut floor = AckFloor::default();
        floor.take(1);
        floor.take(2);
        // 1 comes again before it settled: it waits for its new settling.
        floor.take(1);
        floor.settle(2, message(2));
        floor.settle(9, message(9));
        assert_eq!(due_sequence(&mut floor), None);
        floor.settle(1, message(1));
        assert_eq!(due_sequence(&mut floor), Some(2));
        floor.take(3);
        floor.clear();
        assert_eq!(floor.waiting(), 0);
        assert_eq!(due_sequence(&mut floor), None);
    }
}
