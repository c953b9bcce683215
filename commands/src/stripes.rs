//! A fixed set of async mutexes, one picked per payment id: commands for one payment on this
//! node run one at a time, so they do not burn optimistic-lock retries on each other (the
//! event store's optimistic lock still guards against other nodes). Fixed size: memory does
//! not grow with the number of payments.

use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

pub struct Stripes {
    locks: Vec<Mutex<()>>,
}

impl Stripes {
    pub fn new(count: usize) -> Self {
        assert!(count > 0, "at least one stripe");
        Self {
            locks: (0..count).map(|_| Mutex::new(())).collect(),
        }
    }

    pub async fn lock(&self, id: Uuid) -> MutexGuard<'_, ()> {
        let index = (id.as_u128() % self.locks.len() as u128) as usize;
        self.locks[index].lock().await
    }
}
