//! Versioned bincode 1.3.3 records (rust-stack.md §8: bincode has no schema evolution, so every
//! persisted record starts with a version byte).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Version byte of every record written by this build.
pub const RECORD_VERSION: u8 = 1;

/// A record that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Empty input.
    #[error("empty record")]
    Empty,
    /// Written by a newer (or unknown) format.
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u8),
    /// bincode failed.
    #[error("bincode: {0}")]
    Bincode(#[from] bincode::Error),
}

/// `value` as a version byte followed by its bincode encoding.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![RECORD_VERSION];
    bincode::serialize_into(&mut out, value)?;
    Ok(out)
}

/// The inverse of [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&RECORD_VERSION, rest)) => Ok(bincode::deserialize(rest)?),
        Some((&v, _)) => Err(CodecError::UnsupportedVersion(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Command, SequencedEntry};

    #[test]
    fn command_round_trips_and_rejects_unknown_version() {
        let cmd = Command::Append {
            entries: vec![SequencedEntry::new(b"x".to_vec())],
        };
        let bytes = encode(&cmd).unwrap();
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode::<Command>(&bytes).unwrap(), cmd);
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(
            decode::<Command>(&future),
            Err(CodecError::UnsupportedVersion(9))
        ));
    }
}
