//! From a decoded `CreateEntryRequest` to a [`ValidatedEntry`]: the hashedrekord v0.0.2
//! pipeline in the order of rekor-v2-api.md §5, and the opt-in legacy dsse v0.0.2 type (§12).
//!
//! The detailed reasons in [`EntryError`] are for logs; clients see only the generic messages
//! of §10 (see [`EntryError::client_message`]).

use std::sync::Arc;

use crate::backend::{EntryKind, ValidatedEntry};
use crate::canonical::{dsse_body, hashedrekord_body, identity_hash, leaf_hash, MAX_ENTRY_SIZE};
use crate::key_details::{AlgorithmPolicy, HashAlgorithm, PublicKeyDetails};
use crate::request::{
    CreateEntryRequest, DsseRequestV002, HashedRekordRequestV002, RequestSpec, Verifier,
};
use crate::verifier::{
    EntryVerifier, KeyParseError, RustCryptoVerifier, SignatureError, VerifierKey,
};

/// Legacy dsse: at most this many verifiers and envelope signatures (§13).
pub const MAX_DSSE_VERIFIERS: usize = 10;
pub const MAX_DSSE_SIGNATURES: usize = 10;

/// Why a request cannot become a log entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// No spec, or a dsse request while legacy DSSE is off.
    #[error("invalid type")]
    InvalidType,
    #[error("missing signature")]
    MissingSignature,
    #[error("missing verifier")]
    MissingVerifier,
    #[error("missing digest")]
    MissingDigest,
    #[error("invalid verifier: no public key or certificate")]
    InvalidVerifier,
    #[error("invalid verifier: {0}")]
    UnparseableVerifier(KeyParseError),
    #[error("unknown key details {0}")]
    UnknownKeyDetails(i32),
    #[error("unsupported signing algorithm {0}: it has no prehash")]
    NoPrehash(PublicKeyDetails),
    #[error("unsupported entry algorithm for {key}, digest {hash}, key details {details}")]
    DisallowedAlgorithm {
        key: crate::key_details::KeyType,
        hash: HashAlgorithm,
        details: PublicKeyDetails,
    },
    #[error(
        "digest length ({got}) does not match expected size ({expected}) for algorithm {hash}"
    )]
    InvalidDigestLength {
        got: usize,
        expected: usize,
        hash: HashAlgorithm,
    },
    #[error("verifying signature: {0}")]
    Signature(SignatureError),
    #[error("missing envelope")]
    MissingEnvelope,
    #[error("{count} verifiers; 1 to {MAX_DSSE_VERIFIERS} are allowed")]
    VerifierCount { count: usize },
    #[error("{count} envelope signatures; 1 to {MAX_DSSE_SIGNATURES} are allowed")]
    SignatureCount { count: usize },
    #[error("two verifiers with the same key material")]
    DuplicateVerifier,
    #[error("a verifier verified none of the envelope signatures")]
    UnusedVerifier,
    #[error("an envelope signature was verified by no verifier")]
    UnverifiedSignature,
    /// Too large for an entry-bundle record. Upstream fails at integration with a 500; here
    /// the request is refused before anything is sequenced (400): the size follows from the
    /// request alone, and a body this large could never be integrated.
    #[error("canonical body of {size} bytes exceeds {MAX_ENTRY_SIZE}")]
    EntryTooLarge { size: usize },
}

impl EntryError {
    /// Whether this is the client's fault (400) rather than the log's (500). Every validation
    /// error is decided by the request alone, so this is always `true`.
    pub fn is_client_error(&self) -> bool {
        true
    }
}

/// Validates requests. Cheap to clone; share one per server.
#[derive(Clone)]
pub struct EntryValidator {
    policy: AlgorithmPolicy,
    legacy_dsse: bool,
    verifier: Arc<dyn EntryVerifier>,
}

impl std::fmt::Debug for EntryValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryValidator")
            .field("policy", &self.policy)
            .field("legacy_dsse", &self.legacy_dsse)
            .finish_non_exhaustive()
    }
}

impl EntryValidator {
    /// A validator with the RustCrypto verifier.
    pub fn new(policy: AlgorithmPolicy, legacy_dsse: bool) -> Self {
        Self::with_verifier(policy, legacy_dsse, Arc::new(RustCryptoVerifier))
    }

    /// A validator with another signature-verification backend.
    pub fn with_verifier(
        policy: AlgorithmPolicy,
        legacy_dsse: bool,
        verifier: Arc<dyn EntryVerifier>,
    ) -> Self {
        EntryValidator {
            policy,
            legacy_dsse,
            verifier,
        }
    }

    /// Whether legacy dsse v0.0.2 requests are accepted.
    pub fn legacy_dsse(&self) -> bool {
        self.legacy_dsse
    }

    /// The 400 message for `error` (§10).
    pub fn client_message(&self, error: &EntryError, kind: Option<EntryKind>) -> &'static str {
        match (error, kind) {
            (EntryError::InvalidType, _) if self.legacy_dsse => {
                "invalid type, must be either hashedrekord or dsse"
            }
            (EntryError::InvalidType, _) => "invalid type, must be hashedrekord",
            (EntryError::EntryTooLarge { .. }, Some(EntryKind::Dsse)) => {
                "invalid dsse request: the canonical entry would exceed 65535 bytes"
            }
            (EntryError::EntryTooLarge { .. }, _) => {
                "invalid hashedrekord request: the canonical entry would exceed 65535 bytes"
            }
            (_, Some(EntryKind::Dsse)) => "invalid dsse request",
            _ => "invalid hashedrekord request",
        }
    }

    /// Validates a decoded request. CPU-bound (signature verification): call it off the async
    /// workers. On error, also returns which entry type was being validated.
    pub fn validate(
        &self,
        request: &CreateEntryRequest,
    ) -> Result<ValidatedEntry, (EntryError, Option<EntryKind>)> {
        match &request.spec {
            Some(RequestSpec::HashedRekord(hashed)) => self
                .validate_hashedrekord(hashed)
                .map_err(|e| (e, Some(EntryKind::HashedRekord))),
            Some(RequestSpec::Dsse(dsse)) if self.legacy_dsse => self
                .validate_dsse(dsse)
                .map_err(|e| (e, Some(EntryKind::Dsse))),
            _ => Err((EntryError::InvalidType, None)),
        }
    }

    /// Steps 2–5 for one verifier: parse the key, look up the hash, apply the policy.
    /// `allow_pure_ed25519` is the legacy dsse exception (pure Ed25519 over the PAE).
    fn check_verifier(
        &self,
        verifier: &Verifier,
        allow_pure_ed25519: bool,
    ) -> Result<(VerifierKey, Option<HashAlgorithm>), EntryError> {
        let material = verifier
            .material
            .as_ref()
            .ok_or(EntryError::InvalidVerifier)?;
        // Step 2: parse the verifier.
        let key = VerifierKey::from_material(material).map_err(EntryError::UnparseableVerifier)?;
        // Step 3: keyDetails must be a registry value.
        let details = verifier
            .key_details()
            .ok_or(EntryError::UnknownKeyDetails(verifier.key_details))?;
        let hash = details
            .registry_hash()
            .ok_or(EntryError::UnknownKeyDetails(verifier.key_details))?;
        // Step 4: the algorithm policy. Ours also requires keyDetails to describe the actual
        // key (§5.2: upstream only pairs the key with the keyDetails hash).
        let key_type = key.key_type();
        let pure_ed25519_ok = allow_pure_ed25519 && details == PublicKeyDetails::PKIX_ED25519;
        let Some(prehash) = hash else {
            if pure_ed25519_ok && key_type == crate::key_details::KeyType::Ed25519 {
                return Ok((key, None));
            }
            // Step 5: pure Ed25519 has no prehash (never on the list, so this is also step 4).
            return Err(EntryError::NoPrehash(details));
        };
        if !self.policy.allows(details) || details.expected_key() != Some(key_type) {
            return Err(EntryError::DisallowedAlgorithm {
                key: key_type,
                hash: prehash,
                details,
            });
        }
        Ok((key, Some(prehash)))
    }

    fn validate_hashedrekord(
        &self,
        request: &HashedRekordRequestV002,
    ) -> Result<ValidatedEntry, EntryError> {
        // Step 1: presence.
        let signature = request
            .signature
            .as_ref()
            .ok_or(EntryError::MissingSignature)?;
        if signature.content.is_empty() {
            return Err(EntryError::MissingSignature);
        }
        let verifier = signature
            .verifier
            .as_ref()
            .ok_or(EntryError::MissingVerifier)?;
        if request.digest.is_empty() {
            return Err(EntryError::MissingDigest);
        }
        match &verifier.material {
            Some(material) if !material.raw_bytes().is_empty() => {}
            _ => return Err(EntryError::InvalidVerifier),
        }
        // Steps 2–5.
        let (key, hash) = self.check_verifier(verifier, false)?;
        let hash = hash.ok_or(EntryError::InvalidVerifier)?;
        // Step 6: digest length.
        if request.digest.len() != hash.output_len() {
            return Err(EntryError::InvalidDigestLength {
                got: request.digest.len(),
                expected: hash.output_len(),
                hash,
            });
        }
        // Step 7: the signature over the digest.
        self.verifier
            .verify_digest(&key, hash, &request.digest, &signature.content)
            .map_err(EntryError::Signature)?;
        let body = hashedrekord_body(hash, &request.digest, &signature.content, verifier);
        finish(EntryKind::HashedRekord, body)
    }

    fn validate_dsse(&self, request: &DsseRequestV002) -> Result<ValidatedEntry, EntryError> {
        let envelope = request
            .envelope
            .as_ref()
            .ok_or(EntryError::MissingEnvelope)?;
        let verifier_count = request.verifiers.len();
        if verifier_count == 0 || verifier_count > MAX_DSSE_VERIFIERS {
            return Err(EntryError::VerifierCount {
                count: verifier_count,
            });
        }
        for (i, verifier) in request.verifiers.iter().enumerate() {
            match &verifier.material {
                Some(material) if !material.raw_bytes().is_empty() => {}
                _ => return Err(EntryError::InvalidVerifier),
            }
            if request.verifiers[..i]
                .iter()
                .any(|earlier| earlier.material == verifier.material)
            {
                return Err(EntryError::DuplicateVerifier);
            }
        }
        let signature_count = envelope.signatures.len();
        if signature_count == 0 || signature_count > MAX_DSSE_SIGNATURES {
            return Err(EntryError::SignatureCount {
                count: signature_count,
            });
        }
        if envelope.signatures.iter().any(|s| s.sig.is_empty()) {
            return Err(EntryError::MissingSignature);
        }
        // Identical signatures collapse into one.
        let mut signatures: Vec<&[u8]> = envelope
            .signatures
            .iter()
            .map(|s| s.sig.as_slice())
            .collect();
        signatures.sort();
        signatures.dedup();

        let pae = pre_authentication_encoding(&envelope.payload_type, &envelope.payload);
        let mut verified_by: Vec<Option<&Verifier>> = vec![None; signatures.len()];
        for verifier in &request.verifiers {
            let (key, hash) = self.check_verifier(verifier, true)?;
            let mut verified_any = false;
            for (signature, slot) in signatures.iter().zip(verified_by.iter_mut()) {
                if self
                    .verifier
                    .verify_message(&key, hash, &pae, signature)
                    .is_ok()
                {
                    verified_any = true;
                    slot.get_or_insert(verifier);
                }
            }
            // Upstream iterates a Go map, so its verdict with surplus verifiers depends on
            // order; ours is the deterministic request order: a verifier may verify nothing
            // only if every signature was already verified before it.
            if !verified_any && verified_by.iter().any(Option::is_none) {
                return Err(EntryError::UnusedVerifier);
            }
        }
        let logged: Vec<(&[u8], &Verifier)> = signatures
            .iter()
            .zip(verified_by)
            .map(|(signature, verifier)| verifier.map(|v| (*signature, v)))
            .collect::<Option<_>>()
            .ok_or(EntryError::UnverifiedSignature)?;
        let payload_hash = HashAlgorithm::Sha256.digest(&envelope.payload);
        let body = dsse_body(&payload_hash, &logged);
        finish(EntryKind::Dsse, body)
    }
}

/// DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`, lengths in ASCII decimal.
pub fn pre_authentication_encoding(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut pae = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    pae.extend_from_slice(payload);
    pae
}

fn finish(kind: EntryKind, body: Vec<u8>) -> Result<ValidatedEntry, EntryError> {
    if body.len() > MAX_ENTRY_SIZE {
        return Err(EntryError::EntryTooLarge { size: body.len() });
    }
    Ok(ValidatedEntry {
        kind,
        leaf_hash: leaf_hash(&body),
        identity: identity_hash(&body),
        canonical_body: body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_over_the_bundle_record_limit_are_a_client_error() {
        let validator = EntryValidator::new(AlgorithmPolicy::default(), false);
        let error = finish(EntryKind::HashedRekord, vec![b'x'; MAX_ENTRY_SIZE + 1]).unwrap_err();
        assert_eq!(
            error,
            EntryError::EntryTooLarge {
                size: MAX_ENTRY_SIZE + 1
            }
        );
        assert!(error.is_client_error());
        assert_eq!(
            validator.client_message(&error, Some(EntryKind::HashedRekord)),
            "invalid hashedrekord request: the canonical entry would exceed 65535 bytes"
        );
        assert_eq!(
            validator.client_message(&error, Some(EntryKind::Dsse)),
            "invalid dsse request: the canonical entry would exceed 65535 bytes"
        );
        assert!(finish(EntryKind::HashedRekord, vec![b'x'; MAX_ENTRY_SIZE]).is_ok());
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // DSSE v1 protocol.md: PAE("http://example.com/HelloWorld", "hello world").
        assert_eq!(
            pre_authentication_encoding("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }
}
