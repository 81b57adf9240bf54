//! Authentication of node-to-node requests, decided from the headers alone.
//!
//! Every route of the internal listener (Raft RPCs, write forwarding, admin) requires the
//! cluster secret. It is checked by this middleware before the handler runs, so before any
//! extractor reads the body: a request without the secret costs its headers and nothing else
//! (actix closes a connection whose request body was left unread). This is the one place the
//! secret is compared; handlers check only what depends on the request's content.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::HttpResponse;

use crate::network::{ClusterSecret, CLUSTER_SECRET_HEADER};

/// The middleware: mount with
/// `.wrap(from_fn(move |req, next| require_cluster_secret(secret.clone(), req, next)))`.
pub async fn require_cluster_secret<B: MessageBody>(
    secret: ClusterSecret,
    request: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let presented = request
        .headers()
        .get(CLUSTER_SECRET_HEADER)
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    if secret.verify(presented) {
        return Ok(next.call(request).await?.map_into_left_body());
    }
    tracing::warn!(
        path = request.path(),
        peer = ?request.peer_addr(),
        "internal request without the cluster secret refused"
    );
    let response = HttpResponse::Unauthorized()
        .insert_header((actix_web::http::header::CONNECTION, "close"))
        .json(serde_json::json!({"error": "missing or wrong cluster secret"}));
    Ok(request.into_response(response).map_into_right_body())
}
