//! The SQLite store (embedded default). Placeholder until the store branch lands.
use super::{StoreError, StoreResult};

pub struct SqliteStore;

impl SqliteStore {
    pub async fn connect(_url: &str) -> StoreResult<super::memory::MemoryStore> {
        Err(StoreError::Unavailable("the sqlite store is not built yet".into()))
    }
}
