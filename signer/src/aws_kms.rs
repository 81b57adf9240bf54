//! Not built yet.

use std::sync::Arc;

use crate::{KeyBackend, OpenOptions, SignerError};

/// Opens the key `uri` names.
pub async fn open(uri: &str, _options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, SignerError> {
    Err(SignerError::Config(format!(
        "{uri}: this backend is not built yet"
    )))
}
