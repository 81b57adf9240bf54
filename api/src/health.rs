//! Liveness and readiness, the two questions an orchestrator asks.
//!
//! - `GET /livez`: is the process up and serving HTTP? Always 200 once the listener answers, so a
//!   node waiting for `init`, for a quorum or for its tile store is not restarted for it.
//! - `GET /healthz`: should traffic go here? 200 only when every [`crate::LogBackend::readiness`]
//!   check passes (the node hears from a quorum, its tile store answers); 503 naming the failed
//!   checks otherwise. Upstream's `/healthz` answers `{"status":"SERVING"}`; ours adds the checks.
//!
//! Both name the answering process (`nodeId`, `startToken`) when the config does, so a harness
//! never takes a stranger on the same port for the node it started.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use crate::backend::Readiness;
use crate::http::{json_response, ApiState};

/// `GET /livez`.
pub(crate) async fn livez(state: web::Data<ApiState>) -> HttpResponse {
    let mut body = Map::new();
    body.insert("status".into(), json!("ok"));
    add_instance(&state, &mut body);
    answer(StatusCode::OK, body)
}

/// `GET /healthz`.
pub(crate) async fn healthz(state: web::Data<ApiState>) -> HttpResponse {
    let readiness = state.backend().readiness().await;
    let (status, word) = if readiness.is_ready() {
        (StatusCode::OK, "SERVING")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING")
    };
    let mut body = Map::new();
    body.insert("status".into(), json!(word));
    add_instance(&state, &mut body);
    if !readiness.checks.is_empty() {
        body.insert("checks".into(), checks_json(&readiness));
    }
    answer(status, body)
}

fn checks_json(readiness: &Readiness) -> Value {
    let checks = readiness
        .checks
        .iter()
        .map(|check| {
            let status = if check.ok { "ok" } else { "failed" };
            (
                check.name.to_string(),
                json!({ "status": status, "detail": check.detail }),
            )
        })
        .collect::<Map<_, _>>();
    Value::Object(checks)
}

fn add_instance(state: &ApiState, body: &mut Map<String, Value>) {
    if let Some(instance) = state.instance() {
        body.insert("nodeId".into(), json!(instance.node_id));
        body.insert("startToken".into(), json!(instance.start_token));
    }
}

fn answer(status: StatusCode, body: Map<String, Value>) -> HttpResponse {
    let mut bytes = Value::Object(body).to_string().into_bytes();
    bytes.push(b'\n');
    let mut response = json_response(status, bytes);
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    response
}
