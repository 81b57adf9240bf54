//! Refused submissions and failed reads as gRPC statuses, the way upstream's `CreateEntry`
//! answers (sigstore/rekor-tiles `internal/server/service.go`). The table is in
//! docs/operations.md, "gRPC"; the HTTP twin is `rekor_api::http` (rekor-v2-api.md §10).

use prost::Message as _;
use rekor_api::{SubmissionError, SubmitError};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::pb::google::rpc;

/// Response metadata upstream sets for its HTTP gateway: the HTTP status it maps to.
pub const HTTP_CODE_KEY: &str = "x-http-code";
/// Response metadata upstream sets on a frozen log: the HTTP body it maps to.
pub const HTTP_ERROR_MESSAGE_KEY: &str = "x-http-error-message";
/// Metadata naming the index of the entry a duplicate matches (upstream's name).
pub const LOG_INDEX_KEY: &str = "x-log-index";
/// `google.rpc.ErrorInfo.reason` of a duplicate; its metadata holds `log_index`.
pub const DUPLICATE_REASON: &str = "DUPLICATE_ENTRY";
/// `google.rpc.ErrorInfo.domain` of our details.
pub const ERROR_DOMAIN: &str = "dev.sigstore.rekor.v2";

/// The status a refused submission answers with.
pub fn submission_status(error: &SubmissionError) -> Status {
    match error {
        SubmissionError::Frozen | SubmissionError::Submit(SubmitError::Frozen) => frozen(),
        SubmissionError::Undecodable(message) | SubmissionError::Invalid(message) => {
            Status::invalid_argument(message.clone())
        }
        SubmissionError::Unloggable(message) => Status::unknown(message.clone()),
        SubmissionError::Submit(error) => submit_status(error),
        SubmissionError::ProofCheckFailed => Status::unknown("failed to integrate entry"),
        SubmissionError::Internal => Status::internal("internal server error"),
    }
}

fn submit_status(error: &SubmitError) -> Status {
    match error {
        SubmitError::Duplicate { log_index } => duplicate(error.to_string(), *log_index),
        SubmitError::Overloaded => Status::unavailable("reached max pushback; retry"),
        SubmitError::Unavailable(reason) => {
            tracing::warn!(%reason, "log unavailable");
            Status::unavailable("log unavailable; retry")
        }
        SubmitError::Frozen => frozen(),
        SubmitError::Internal(reason) => {
            tracing::error!(%reason, "integrating an entry failed");
            Status::unknown("failed to integrate entry")
        }
    }
}

/// Upstream's answer on a read-only log: Unimplemented, and the HTTP mapping in metadata.
fn frozen() -> Status {
    let mut status = Status::unimplemented("log frozen");
    let metadata = status.metadata_mut();
    metadata.insert(HTTP_CODE_KEY, MetadataValue::from_static("405"));
    metadata.insert(
        HTTP_ERROR_MESSAGE_KEY,
        MetadataValue::from_static("This log has been frozen, please switch to the latest log."),
    );
    status
}

/// AlreadyExists, with the existing entry's index twice: as `x-log-index` metadata (what
/// upstream sends) and as a `google.rpc.ErrorInfo` in the status details (what rich-error
/// clients read).
fn duplicate(message: String, log_index: u64) -> Status {
    let info = rpc::ErrorInfo {
        reason: DUPLICATE_REASON.into(),
        domain: ERROR_DOMAIN.into(),
        metadata: [("log_index".to_owned(), log_index.to_string())].into(),
    };
    let details = rpc::Status {
        code: Code::AlreadyExists as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
            value: info.encode_to_vec(),
        }],
    };
    let mut status =
        Status::with_details(Code::AlreadyExists, message, details.encode_to_vec().into());
    if let Ok(value) = log_index.to_string().parse() {
        status.metadata_mut().insert(LOG_INDEX_KEY, value);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_names_the_index_in_metadata_and_details() {
        let status = submission_status(&SubmissionError::Submit(SubmitError::Duplicate {
            log_index: 42,
        }));
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(
            status.message(),
            "an equivalent entry already exists in the transparency log with index 42"
        );
        assert_eq!(status.metadata().get(LOG_INDEX_KEY).unwrap(), "42");
        let details = rpc::Status::decode(status.details()).unwrap();
        assert_eq!(details.code, Code::AlreadyExists as i32);
        let info = rpc::ErrorInfo::decode(details.details[0].value.as_slice()).unwrap();
        assert_eq!(info.reason, DUPLICATE_REASON);
        assert_eq!(info.metadata["log_index"], "42");
    }

    #[test]
    fn codes_follow_upstream() {
        let cases = [
            (SubmissionError::Frozen, Code::Unimplemented),
            (SubmissionError::Invalid("x".into()), Code::InvalidArgument),
            (
                SubmissionError::Undecodable("x".into()),
                Code::InvalidArgument,
            ),
            (SubmissionError::Unloggable("x".into()), Code::Unknown),
            (
                SubmissionError::Submit(SubmitError::Overloaded),
                Code::Unavailable,
            ),
            (
                SubmissionError::Submit(SubmitError::Unavailable("no leader".into())),
                Code::Unavailable,
            ),
            (
                SubmissionError::Submit(SubmitError::Internal("disk".into())),
                Code::Unknown,
            ),
            (SubmissionError::ProofCheckFailed, Code::Unknown),
            (SubmissionError::Internal, Code::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(submission_status(&error).code(), code, "{error:?}");
        }
        let frozen = submission_status(&SubmissionError::Frozen);
        assert_eq!(frozen.metadata().get(HTTP_CODE_KEY).unwrap(), "405");
    }
}
