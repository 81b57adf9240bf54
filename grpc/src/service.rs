//! The `dev.sigstore.rekor.v2.Rekor` methods. `CreateEntry` converts the protobuf request into
//! the `rekor_api::CreateEntryRequest` the JSON decoder produces and hands it to
//! `ApiState::submit`, the HTTP route's path; the reads serve the bytes the HTTP read routes
//! serve, from `LogBackend::checkpoint`/`tile`.

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use rekor_api::backend::TileRequest;
use rekor_api::request as api;
use rekor_api::{ApiState, Submitted};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use tracing::error;

use crate::metrics::GrpcMetrics;
use crate::pb::dev::sigstore::common::v1 as common;
use crate::pb::dev::sigstore::rekor::v1 as rekor_v1;
use crate::pb::dev::sigstore::rekor::v2 as rekor_v2;
use crate::pb::google::api::HttpBody;
use crate::pb::io::intoto;
use crate::status::{submission_status, HTTP_CODE_KEY};

/// Longest tile index (`N`) a read accepts: the deepest index, `x018/x446/x744/x073/x709/x551/615`,
/// plus a partial suffix, fits in 40 bytes.
const MAX_TILE_INDEX_LEN: usize = 64;

/// The service, over the node's API state (its validator, verification pool and backend).
#[derive(Clone)]
pub struct RekorService {
    state: ApiState,
    metrics: GrpcMetrics,
}

impl RekorService {
    pub fn new(state: ApiState, metrics: GrpcMetrics) -> Self {
        RekorService { state, metrics }
    }

    fn observe<T>(&self, method: &str, started: Instant, result: &Result<T, Status>) {
        let code = match result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.metrics.observe(method, code, started);
    }

    async fn read(&self, what: &str, tile: Option<TileRequest>) -> Result<HttpBody, Status> {
        let backend = self.state.backend();
        let (read, content_type) = match tile {
            None => (backend.checkpoint().await, "text/plain; charset=utf-8"),
            Some(id) => (backend.tile(id).await, "application/octet-stream"),
        };
        match read {
            Ok(Some(data)) => Ok(http_body(content_type, data)),
            Ok(None) => Err(Status::not_found(format!("{what} not found"))),
            Err(e) => {
                error!(error = %e, what, "reading from the tile store failed");
                Err(Status::internal("internal server error"))
            }
        }
    }
}

fn http_body(content_type: &str, data: Bytes) -> HttpBody {
    HttpBody {
        content_type: content_type.to_owned(),
        data: data.to_vec(),
        extensions: Vec::new(),
    }
}

/// A tile path from a request's parts; `None` unless the storage crate's strict parser takes it.
fn tile_request(tail: String) -> Option<TileRequest> {
    TileRequest::parse(&tail)
}

fn bad_index(n: &str) -> Status {
    let shown: String = n.chars().take(MAX_TILE_INDEX_LEN).collect();
    Status::invalid_argument(format!("not a tile index: {shown:?}"))
}

#[tonic::async_trait]
impl rekor_v2::rekor_server::Rekor for RekorService {
    async fn create_entry(
        &self,
        request: Request<rekor_v2::CreateEntryRequest>,
    ) -> Result<Response<rekor_v1::TransparencyLogEntry>, Status> {
        let started = Instant::now();
        let message = request.into_inner();
        let result = self
            .state
            .submit(move || Ok::<_, Infallible>(to_api_request(message)))
            .await
            .map_err(|error| submission_status(&error))
            .and_then(|submitted| transparency_log_entry(&self.state.config().log_id, &submitted))
            .map(|entry| {
                let mut response = Response::new(entry);
                response
                    .metadata_mut()
                    .insert(HTTP_CODE_KEY, MetadataValue::from_static("201"));
                response
            });
        self.observe("CreateEntry", started, &result);
        result
    }

    async fn get_tile(
        &self,
        request: Request<rekor_v2::TileRequest>,
    ) -> Result<Response<HttpBody>, Status> {
        let started = Instant::now();
        let rekor_v2::TileRequest { l, n } = request.into_inner();
        let result = async {
            if n.len() > MAX_TILE_INDEX_LEN {
                return Err(bad_index(&n));
            }
            let id = tile_request(format!("{l}/{n}")).ok_or_else(|| bad_index(&n))?;
            self.read("tile", Some(id)).await.map(Response::new)
        }
        .await;
        self.observe("GetTile", started, &result);
        result
    }

    async fn get_entry_bundle(
        &self,
        request: Request<rekor_v2::EntryBundleRequest>,
    ) -> Result<Response<HttpBody>, Status> {
        let started = Instant::now();
        let rekor_v2::EntryBundleRequest { n } = request.into_inner();
        let result = async {
            if n.len() > MAX_TILE_INDEX_LEN {
                return Err(bad_index(&n));
            }
            let id = tile_request(format!("entries/{n}")).ok_or_else(|| bad_index(&n))?;
            self.read("entry bundle", Some(id)).await.map(Response::new)
        }
        .await;
        self.observe("GetEntryBundle", started, &result);
        result
    }

    async fn get_checkpoint(&self, _request: Request<()>) -> Result<Response<HttpBody>, Status> {
        let started = Instant::now();
        let result = self.read("checkpoint", None).await.map(Response::new);
        self.observe("GetCheckpoint", started, &result);
        result
    }
}

/// The protobuf request as the JSON decoder would have produced it. Protobuf has nothing to
/// refuse here that JSON has (no duplicate names, no syntax): every rule is in validation.
pub fn to_api_request(request: rekor_v2::CreateEntryRequest) -> api::CreateEntryRequest {
    use rekor_v2::create_entry_request::Spec;
    let spec = request.spec.map(|spec| match spec {
        Spec::HashedRekordRequestV002(hashed) => {
            api::RequestSpec::HashedRekord(api::HashedRekordRequestV002 {
                digest: hashed.digest,
                signature: hashed.signature.map(to_api_signature),
            })
        }
        #[allow(deprecated)]
        Spec::DsseRequestV002(dsse) => api::RequestSpec::Dsse(api::DsseRequestV002 {
            envelope: dsse.envelope.map(to_api_envelope),
            verifiers: dsse.verifiers.into_iter().map(to_api_verifier).collect(),
        }),
    });
    api::CreateEntryRequest { spec }
}

fn to_api_signature(signature: rekor_v2::Signature) -> api::Signature {
    api::Signature {
        content: signature.content,
        verifier: signature.verifier.map(to_api_verifier),
    }
}

fn to_api_verifier(verifier: rekor_v2::Verifier) -> api::Verifier {
    use rekor_v2::verifier::Verifier as Material;
    api::Verifier {
        material: verifier.verifier.map(|material| match material {
            Material::PublicKey(key) => api::VerifierMaterial::PublicKey {
                raw_bytes: key.raw_bytes,
            },
            Material::X509Certificate(certificate) => api::VerifierMaterial::X509Certificate {
                raw_bytes: certificate.raw_bytes,
            },
        }),
        key_details: verifier.key_details,
    }
}

fn to_api_envelope(envelope: intoto::Envelope) -> api::Envelope {
    api::Envelope {
        payload: envelope.payload,
        payload_type: envelope.payload_type,
        signatures: envelope
            .signatures
            .into_iter()
            .map(|signature| api::EnvelopeSignature {
                sig: signature.sig,
                keyid: signature.keyid,
            })
            .collect(),
    }
}

/// The TransparencyLogEntry of a logged entry: field for field the HTTP 201 JSON body
/// (`rekor_api::response`), as protobuf.
pub fn transparency_log_entry(
    log_id: &[u8; 32],
    submitted: &Submitted,
) -> Result<rekor_v1::TransparencyLogEntry, Status> {
    let logged = &submitted.logged;
    let (Ok(log_index), Ok(tree_size)) = (
        i64::try_from(logged.log_index),
        i64::try_from(logged.tree_size),
    ) else {
        error!(index = logged.log_index, "log index beyond int64");
        return Err(Status::internal("internal server error"));
    };
    Ok(rekor_v1::TransparencyLogEntry {
        log_index,
        log_id: Some(common::LogId {
            key_id: log_id.to_vec(),
        }),
        kind_version: Some(rekor_v1::KindVersion {
            kind: submitted.kind.kind().to_owned(),
            version: submitted.kind.version().to_owned(),
        }),
        integrated_time: 0,
        inclusion_promise: None,
        inclusion_proof: Some(rekor_v1::InclusionProof {
            log_index,
            root_hash: logged.root_hash.to_vec(),
            tree_size,
            hashes: logged.inclusion_proof.iter().map(|h| h.to_vec()).collect(),
            checkpoint: Some(rekor_v1::Checkpoint {
                envelope: logged.checkpoint.clone(),
            }),
        }),
        canonicalized_body: submitted.canonical_body.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protobuf_request_converts_to_the_json_decoders_request() {
        let json = br#"{"hashedRekordRequestV002":{"digest":"AAEC","signature":{"content":"AQ==",
            "verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","x509Certificate":{"rawBytes":"Ag=="}}}}}"#;
        let from_json = api::CreateEntryRequest::from_json(json).unwrap();
        let message = rekor_v2::CreateEntryRequest {
            spec: Some(
                rekor_v2::create_entry_request::Spec::HashedRekordRequestV002(
                    rekor_v2::HashedRekordRequestV002 {
                        digest: vec![0, 1, 2],
                        signature: Some(rekor_v2::Signature {
                            content: vec![1],
                            verifier: Some(rekor_v2::Verifier {
                                verifier: Some(rekor_v2::verifier::Verifier::X509Certificate(
                                    common::X509Certificate { raw_bytes: vec![2] },
                                )),
                                key_details: common::PublicKeyDetails::PkixEcdsaP256Sha256 as i32,
                            }),
                        }),
                    },
                ),
            ),
        };
        assert_eq!(to_api_request(message), from_json);
        assert_eq!(
            to_api_request(rekor_v2::CreateEntryRequest::default()),
            api::CreateEntryRequest::from_json(b"{}").unwrap()
        );
    }

    #[test]
    fn tile_paths_are_parsed_strictly() {
        assert!(tile_request("0/x001/234".into()).is_some());
        assert!(tile_request("entries/000.p/5".into()).is_some());
        assert!(tile_request("0/../000".into()).is_none());
        assert!(tile_request("entries/0".into()).is_none());
    }
}
