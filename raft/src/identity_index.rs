//! STUB (replaced by the real module).
#![allow(dead_code, unused_variables)]
use std::path::Path;
#[derive(Debug, thiserror::Error)]
pub enum IdentityIndexError {
    #[error("io")]
    Io,
}
pub struct IdentityIndex;
impl IdentityIndex {
    pub fn open(dir: &Path) -> Result<Self, IdentityIndexError> { todo!() }
    pub fn get(&self, identity: &[u8; 32]) -> Result<Option<u64>, IdentityIndexError> { todo!() }
    pub fn insert(&self, identity: &[u8; 32], index: u64) -> Result<(), IdentityIndexError> { todo!() }
    pub fn insert_many(&self, items: &[([u8; 32], u64)]) -> Result<(), IdentityIndexError> { todo!() }
    pub fn sync(&self, watermark: u64) -> Result<(), IdentityIndexError> { todo!() }
    pub fn durable_watermark(&self) -> u64 { todo!() }
    pub fn len(&self) -> u64 { todo!() }
    pub fn size_on_disk(&self) -> u64 { todo!() }
}
