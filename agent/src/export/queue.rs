//! The exporter's input: a bounded queue the joiner pushes records into
//! and the exporter task takes from in whole chunks, so a burst of records
//! costs one wake-up, not one per record. Full: the caller drops and counts.

use std::sync::{Mutex, PoisonError};

use connlog_proto::v1::ConnectionRecord;
use tokio::sync::Notify;

pub(crate) struct Queue {
    inner: Mutex<Inner>,
    /// Woken when the queue goes from empty to not empty, or closes.
    ready: Notify,
    capacity: usize,
}

struct Inner {
    records: Vec<ConnectionRecord>,
    /// Live `ExportHandle`s; none left and empty means the input ended.
    handles: usize,
    /// Shutdown: nothing newer is accepted.
    closed: bool,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                records: Vec::new(),
                handles: 1,
                closed: false,
            }),
            ready: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; if it did, the Vec is
        // still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the record; false (and the record is dropped) when the queue
    /// is full or closed.
    pub(crate) fn push(&self, record: ConnectionRecord) -> bool {
        let mut inner = self.lock();
        if inner.closed || inner.records.len() >= self.capacity {
            return false;
        }
        let wake = inner.records.is_empty();
        inner.records.push(record);
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Waits for records and swaps them into `into` (which must be empty;
    /// its allocation is reused). Returns false once the input has ended
    /// (every handle dropped, or closed) and nothing is left. Cancel-safe.
    pub(crate) async fn take(&self, into: &mut Vec<ConnectionRecord>) -> bool {
        loop {
            {
                let mut inner = self.lock();
                if !inner.records.is_empty() {
                    std::mem::swap(&mut inner.records, into);
                    return true;
                }
                if inner.handles == 0 || inner.closed {
                    return false;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Refuses anything newer; what is queued can still be taken.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    pub(crate) fn add_handle(&self) {
        self.lock().handles += 1;
    }

    pub(crate) fn drop_handle(&self) {
        let mut inner = self.lock();
        inner.handles = inner.handles.saturating_sub(1);
        let last = inner.handles == 0;
        drop(inner);
        if last {
            self.ready.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> ConnectionRecord {
        ConnectionRecord {
            connection_id: format!("id-{i}"),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn chunks_in_order_bounded_and_ends_when_handles_go() {
        let q = Queue::new(2);
        assert!(q.push(record(0)));
        assert!(q.push(record(1)));
        assert!(!q.push(record(2)), "full");
        let mut got = Vec::new();
        assert!(q.take(&mut got).await);
        assert_eq!(got, vec![record(0), record(1)]);
        got.clear();
        assert!(q.push(record(3)));
        q.drop_handle();
        assert!(q.take(&mut got).await, "what was queued is still taken");
        assert_eq!(got, vec![record(3)]);
        got.clear();
        assert!(!q.take(&mut got).await);
    }

    #[tokio::test]
    async fn close_refuses_newer_records() {
        let q = Queue::new(8);
        assert!(q.push(record(0)));
        q.close();
        assert!(!q.push(record(1)));
        let mut got = Vec::new();
        assert!(q.take(&mut got).await);
        assert_eq!(got.len(), 1);
        got.clear();
        assert!(!q.take(&mut got).await);
    }
}
