//! What a certificate says about its holder: the identities of this log's cluster.
//!
//! A node's certificate names its Raft node id, an operator's certificate names the operator,
//! each as a URI in the subject alternative names:
//!
//! - node 3: `urn:rekor-raft:node:3`
//! - operator alice: `urn:rekor-raft:operator:alice`
//!
//! A URI SAN rather than a DNS name, because a node's identity is its id, not where it runs:
//! addresses change (a rescheduled pod, a renumbered rack), the id does not. cert-manager and
//! every CA tool can put a URI SAN in a certificate (`uris:` in a cert-manager `Certificate`).
//! A certificate naming both roles, two node ids, or none names no identity this log accepts.

use std::time::{Duration, SystemTime};

use der::Decode;
use rekor_raft::Caller;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// URI prefix of a node identity; the node id follows in decimal.
pub const NODE_URI_PREFIX: &str = "urn:rekor-raft:node:";
/// URI prefix of an operator identity; the operator's name follows.
pub const OPERATOR_URI_PREFIX: &str = "urn:rekor-raft:operator:";

/// The SAN URI naming node `id`.
pub fn node_uri(id: u64) -> String {
    format!("{NODE_URI_PREFIX}{id}")
}

/// The SAN URI naming operator `name`.
pub fn operator_uri(name: &str) -> String {
    format!("{OPERATOR_URI_PREFIX}{name}")
}

/// The identity a (chain-verified) certificate names; [`Caller::Unknown`] when it names none,
/// several, or cannot be parsed.
pub fn caller_of(certificate_der: &[u8]) -> Caller {
    let Ok(certificate) = Certificate::from_der(certificate_der) else {
        return Caller::Unknown;
    };
    let mut found = None;
    for uri in san_uris(&certificate) {
        let this = if let Some(digits) = uri.strip_prefix(NODE_URI_PREFIX) {
            // One spelling per id: `node:03` or `node:+3` name nobody.
            match digits.parse::<u64>() {
                Ok(id) if id > 0 && id.to_string() == digits => Caller::Node(id),
                _ => return Caller::Unknown,
            }
        } else if let Some(name) = uri.strip_prefix(OPERATOR_URI_PREFIX) {
            if name.is_empty() {
                return Caller::Unknown;
            }
            Caller::Operator(name.to_owned())
        } else {
            continue;
        };
        if found.replace(this).is_some() {
            return Caller::Unknown;
        }
    }
    found.unwrap_or(Caller::Unknown)
}

fn san_uris(certificate: &Certificate) -> Vec<String> {
    let Ok(Some((_critical, names))) = certificate.tbs_certificate.get::<SubjectAltName>() else {
        return Vec::new();
    };
    names
        .0
        .into_iter()
        .filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}

/// When a certificate stops being valid (its notAfter).
pub fn not_after(certificate_der: &[u8]) -> Option<SystemTime> {
    let certificate = Certificate::from_der(certificate_der).ok()?;
    let since_epoch: Duration = certificate
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration();
    Some(SystemTime::UNIX_EPOCH + since_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate_with_uris(uris: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        for uri in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*uri).try_into().unwrap()));
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_names_one_node_or_one_operator() {
        assert_eq!(
            caller_of(&certificate_with_uris(&["urn:rekor-raft:node:3"])),
            Caller::Node(3)
        );
        assert_eq!(
            caller_of(&certificate_with_uris(&[
                "https://example.com/",
                "urn:rekor-raft:operator:alice"
            ])),
            Caller::Operator("alice".into())
        );
    }

    #[test]
    fn ambiguous_or_malformed_identities_name_nobody() {
        for uris in [
            &[][..],
            &["https://example.com/"][..],
            &["urn:rekor-raft:node:2", "urn:rekor-raft:node:3"][..],
            &["urn:rekor-raft:node:2", "urn:rekor-raft:operator:alice"][..],
            &["urn:rekor-raft:node:0"][..],
            &["urn:rekor-raft:node:03"][..],
            &["urn:rekor-raft:node:+3"][..],
            &["urn:rekor-raft:node:three"][..],
            &["urn:rekor-raft:operator:"][..],
        ] {
            assert_eq!(
                caller_of(&certificate_with_uris(uris)),
                Caller::Unknown,
                "{uris:?}"
            );
        }
        assert_eq!(caller_of(b"not a certificate"), Caller::Unknown);
    }
}
