//! STUB (replaced by the real module).
#![allow(dead_code, unused_variables)]
use std::ops::Range;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct SegmentConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
}
impl SegmentConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), segment_bytes: 64 << 20 }
    }
}
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("out of range")]
    OutOfRange { requested: Range<u64>, held: Range<u64> },
    #[error("io")]
    Io,
}
pub struct SegmentLog;
impl SegmentLog {
    pub fn open(config: SegmentConfig) -> Result<Self, SegmentError> { todo!() }
    pub fn first_index(&self) -> Option<u64> { todo!() }
    pub fn next_index(&self) -> u64 { todo!() }
    pub fn append(&self, first: u64, records: &[&[u8]]) -> Result<(), SegmentError> { todo!() }
    pub fn sync(&self) -> Result<(), SegmentError> { todo!() }
    pub fn truncate_from(&self, from: u64) -> Result<(), SegmentError> { todo!() }
    pub fn purge_to(&self, to: u64) -> Result<(), SegmentError> { todo!() }
    pub fn reset(&self, next: u64) -> Result<(), SegmentError> { todo!() }
    pub fn read(&self, range: Range<u64>) -> Result<Vec<Vec<u8>>, SegmentError> { todo!() }
    pub fn size_on_disk(&self) -> u64 { todo!() }
}
