//! Authentication of node-to-node requests, decided from the connection and the headers alone.
//!
//! Every route of the internal listener (Raft RPCs, write forwarding, catch-up reads, admin) is
//! checked by [`authenticate`] before its handler runs, so before any extractor reads the body:
//! a refused request costs its headers and nothing else (actix closes a connection whose request
//! body was left unread). This is the one place callers are authenticated; handlers check only
//! what depends on the request's content (a Raft RPC's claimed sender, see [`AuthenticatedPeer`]).
//!
//! Two factors:
//! - **the cluster secret** ([`CLUSTER_SECRET_HEADER`]), always required;
//! - **the caller's certificate**, when the internal listener runs mutual TLS. The listener
//!   verifies the chain against the cluster CA during the handshake and puts the identity the
//!   certificate names into the connection's data as a [`Caller`]. A route is open to one
//!   [`Role`]: a node certificate reaches the peer routes and only as the node it names (the
//!   [`SOURCE_NODE_HEADER`] must agree), an operator certificate reaches the admin routes.
//!
//! The secret stays with TLS on as a second factor: a stolen node certificate alone, or a leaked
//! secret alone, does not let anyone into the cluster (docs/operations.md, "Transport security").

use std::fmt;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};

use crate::network::{ClusterSecret, CLUSTER_SECRET_HEADER, SOURCE_NODE_HEADER};
use crate::types::NodeId;

/// Who is at the other end of a mutually authenticated connection, as its verified certificate
/// names it. The listener stores it in the connection data (`HttpServer::on_connect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A cluster node with this id.
    Node(NodeId),
    /// An operator (the name is for logs only).
    Operator(String),
    /// A certificate from the cluster CA that names no identity this log knows.
    Unknown,
}

/// Which callers a route is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Raft RPCs, write forwarding and catch-up reads: nodes only.
    Peer,
    /// `init`, `status`, `node add|remove|list`, `freeze`: operators only.
    Operator,
}

/// The node id of a request's sender, once its certificate and its claim agree. Put in the
/// request's extensions by [`authenticate`]; a Raft handler compares it with the sender the
/// decoded RPC names. Absent when the listener does not run mutual TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticatedPeer(pub NodeId);

/// Why a request was refused, as counted by the [`RefusalCounter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or wrong cluster secret.
    Secret,
    /// Mutual TLS is on but the connection carries no certificate identity.
    NoCertificate,
    /// A certificate of the other role (a node on an admin route, an operator on a peer route),
    /// or one that names no known identity.
    WrongRole,
    /// A node certificate whose id differs from the id the request claims.
    IdentityMismatch,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Secret => "secret",
            Refusal::NoCertificate => "no_certificate",
            Refusal::WrongRole => "wrong_role",
            Refusal::IdentityMismatch => "identity_mismatch",
        }
    }
}

/// Called once per refused request (the node counts them in a metric).
pub type RefusalCounter = Arc<dyn Fn(Refusal) + Send + Sync>;

/// What [`authenticate`] checks. Cheap to clone.
#[derive(Clone)]
pub struct InternalAuth {
    secret: ClusterSecret,
    require_certificate: bool,
    on_refusal: Option<RefusalCounter>,
}

impl fmt::Debug for InternalAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternalAuth")
            .field("require_certificate", &self.require_certificate)
            .finish_non_exhaustive()
    }
}

impl InternalAuth {
    /// The cluster secret only: for an internal listener without TLS.
    pub fn secret_only(secret: ClusterSecret) -> Self {
        Self {
            secret,
            require_certificate: false,
            on_refusal: None,
        }
    }

    /// The secret and a certificate identity of the route's role: for a mutual-TLS listener
    /// that stores a [`Caller`] in each connection's data.
    pub fn with_certificates(secret: ClusterSecret) -> Self {
        Self {
            secret,
            require_certificate: true,
            on_refusal: None,
        }
    }

    /// Report each refusal to `counter`.
    pub fn counting_refusals(mut self, counter: RefusalCounter) -> Self {
        self.on_refusal = Some(counter);
        self
    }

    /// Whether callers must present a certificate.
    pub fn requires_certificate(&self) -> bool {
        self.require_certificate
    }

    /// The decision for a request's connection identity and headers: the authenticated peer
    /// (for a peer route under mutual TLS), or why it is refused.
    fn decide(
        &self,
        role: Role,
        caller: Option<&Caller>,
        secret: &[u8],
        claimed_source: Option<&str>,
    ) -> Result<Option<AuthenticatedPeer>, (Refusal, String)> {
        if !self.secret.verify(secret) {
            return Err((Refusal::Secret, "missing or wrong cluster secret".into()));
        }
        if !self.require_certificate {
            return Ok(None);
        }
        let Some(caller) = caller else {
            return Err((
                Refusal::NoCertificate,
                "no client certificate on this connection".into(),
            ));
        };
        match (role, caller) {
            (Role::Peer, Caller::Node(id)) => {
                let claimed = claimed_source.and_then(|v| v.parse::<NodeId>().ok());
                if claimed == Some(*id) {
                    Ok(Some(AuthenticatedPeer(*id)))
                } else {
                    Err((
                        Refusal::IdentityMismatch,
                        format!(
                            "the request claims to come from node {}, its certificate names node {id}",
                            claimed_source.unwrap_or("(none)")
                        ),
                    ))
                }
            }
            (Role::Operator, Caller::Operator(_)) => Ok(None),
            (Role::Peer, _) => Err((
                Refusal::WrongRole,
                "this route is for cluster nodes; the certificate is not a node's".into(),
            )),
            (Role::Operator, _) => Err((
                Refusal::WrongRole,
                "this route is for operators; the certificate is not an operator's".into(),
            )),
        }
    }
}

/// The middleware: mount with
/// `.wrap(from_fn(move |req, next| authenticate(auth.clone(), Role::Peer, req, next)))`.
pub async fn authenticate<B: MessageBody>(
    auth: InternalAuth,
    role: Role,
    request: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let decision = auth.decide(
        role,
        request.conn_data::<Caller>(),
        request
            .headers()
            .get(CLUSTER_SECRET_HEADER)
            .map(|value| value.as_bytes())
            .unwrap_or_default(),
        request
            .headers()
            .get(SOURCE_NODE_HEADER)
            .and_then(|value| value.to_str().ok()),
    );
    match decision {
        Ok(peer) => {
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            Ok(next.call(request).await?.map_into_left_body())
        }
        Err((refusal, message)) => {
            if let Some(count) = &auth.on_refusal {
                count(refusal);
            }
            tracing::warn!(
                path = request.path(),
                peer = ?request.peer_addr(),
                caller = ?request.conn_data::<Caller>(),
                reason = refusal.label(),
                "internal request refused: {message}"
            );
            let status = match refusal {
                Refusal::Secret | Refusal::NoCertificate => StatusCode::UNAUTHORIZED,
                Refusal::WrongRole | Refusal::IdentityMismatch => StatusCode::FORBIDDEN,
            };
            let response = HttpResponse::build(status)
                .insert_header((actix_web::http::header::CONNECTION, "close"))
                .json(serde_json::json!({ "error": message }));
            Ok(request.into_response(response).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a secret of thirty-two bytes or more";

    fn mtls() -> InternalAuth {
        InternalAuth::with_certificates(ClusterSecret::new(SECRET))
    }

    #[test]
    fn the_secret_is_required_with_or_without_certificates() {
        let plain = InternalAuth::secret_only(ClusterSecret::new(SECRET));
        assert_eq!(
            plain.decide(Role::Peer, None, SECRET.as_bytes(), None),
            Ok(None)
        );
        let wrong = plain.decide(Role::Peer, None, b"guess", None);
        assert_eq!(wrong.unwrap_err().0, Refusal::Secret);
        let node = Caller::Node(2);
        let wrong = mtls().decide(Role::Peer, Some(&node), b"guess", Some("2"));
        assert_eq!(wrong.unwrap_err().0, Refusal::Secret);
    }

    #[test]
    fn a_node_may_speak_only_as_itself_and_only_on_peer_routes() {
        let node = Caller::Node(2);
        let secret = SECRET.as_bytes();
        assert_eq!(
            mtls().decide(Role::Peer, Some(&node), secret, Some("2")),
            Ok(Some(AuthenticatedPeer(2)))
        );
        for claim in [Some("3"), Some("two"), None] {
            let refused = mtls().decide(Role::Peer, Some(&node), secret, claim);
            assert_eq!(
                refused.unwrap_err().0,
                Refusal::IdentityMismatch,
                "{claim:?}"
            );
        }
        let refused = mtls().decide(Role::Operator, Some(&node), secret, Some("2"));
        assert_eq!(refused.unwrap_err().0, Refusal::WrongRole);
    }

    #[test]
    fn an_operator_may_run_admin_routes_only() {
        let operator = Caller::Operator("alice".into());
        let secret = SECRET.as_bytes();
        assert_eq!(
            mtls().decide(Role::Operator, Some(&operator), secret, None),
            Ok(None)
        );
        let refused = mtls().decide(Role::Peer, Some(&operator), secret, Some("1"));
        assert_eq!(refused.unwrap_err().0, Refusal::WrongRole);
        let refused = mtls().decide(Role::Operator, Some(&Caller::Unknown), secret, None);
        assert_eq!(refused.unwrap_err().0, Refusal::WrongRole);
        let refused = mtls().decide(Role::Operator, None, secret, None);
        assert_eq!(refused.unwrap_err().0, Refusal::NoCertificate);
    }
}
