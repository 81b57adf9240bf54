//! `common.v1.PublicKeyDetails`, the hash each value implies, and the signing-algorithm
//! allow-list (rekor-v2-api.md §5 steps 3–5, §5.1).

use std::fmt;

/// `dev.sigstore.common.v1.PublicKeyDetails` (sigstore/protobuf-specs `sigstore_common.proto`).
/// Every value of the enum is listed so that a request naming any of them decodes; only the
/// registry subset ([`PublicKeyDetails::registry_hash`]) passes validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[allow(non_camel_case_types)]
pub enum PublicKeyDetails {
    PUBLIC_KEY_DETAILS_UNSPECIFIED,
    PKCS1_RSA_PKCS1V5,
    PKCS1_RSA_PSS,
    PKIX_RSA_PKCS1V5,
    PKIX_RSA_PSS,
    PKIX_RSA_PKCS1V15_2048_SHA256,
    PKIX_RSA_PKCS1V15_3072_SHA256,
    PKIX_RSA_PKCS1V15_4096_SHA256,
    PKIX_RSA_PSS_2048_SHA256,
    PKIX_RSA_PSS_3072_SHA256,
    PKIX_RSA_PSS_4096_SHA256,
    PKIX_ECDSA_P256_HMAC_SHA_256,
    PKIX_ECDSA_P256_SHA_256,
    PKIX_ECDSA_P384_SHA_384,
    PKIX_ECDSA_P521_SHA_512,
    PKIX_ED25519,
    PKIX_ED25519_PH,
    PKIX_ECDSA_P384_SHA_256,
    PKIX_ECDSA_P521_SHA_256,
    LMS_SHA256,
    LMOTS_SHA256,
    ML_DSA_44,
    ML_DSA_65,
    ML_DSA_87,
}

/// (value, proto number, name), in one table so the two mappings cannot drift apart.
const TABLE: [(PublicKeyDetails, i32, &str); 24] = {
    use PublicKeyDetails::*;
    [
        (
            PUBLIC_KEY_DETAILS_UNSPECIFIED,
            0,
            "PUBLIC_KEY_DETAILS_UNSPECIFIED",
        ),
        (PKCS1_RSA_PKCS1V5, 1, "PKCS1_RSA_PKCS1V5"),
        (PKCS1_RSA_PSS, 2, "PKCS1_RSA_PSS"),
        (PKIX_RSA_PKCS1V5, 3, "PKIX_RSA_PKCS1V5"),
        (PKIX_RSA_PSS, 4, "PKIX_RSA_PSS"),
        (PKIX_ECDSA_P256_SHA_256, 5, "PKIX_ECDSA_P256_SHA_256"),
        (
            PKIX_ECDSA_P256_HMAC_SHA_256,
            6,
            "PKIX_ECDSA_P256_HMAC_SHA_256",
        ),
        (PKIX_ED25519, 7, "PKIX_ED25519"),
        (PKIX_ED25519_PH, 8, "PKIX_ED25519_PH"),
        (
            PKIX_RSA_PKCS1V15_2048_SHA256,
            9,
            "PKIX_RSA_PKCS1V15_2048_SHA256",
        ),
        (
            PKIX_RSA_PKCS1V15_3072_SHA256,
            10,
            "PKIX_RSA_PKCS1V15_3072_SHA256",
        ),
        (
            PKIX_RSA_PKCS1V15_4096_SHA256,
            11,
            "PKIX_RSA_PKCS1V15_4096_SHA256",
        ),
        (PKIX_ECDSA_P384_SHA_384, 12, "PKIX_ECDSA_P384_SHA_384"),
        (PKIX_ECDSA_P521_SHA_512, 13, "PKIX_ECDSA_P521_SHA_512"),
        (LMS_SHA256, 14, "LMS_SHA256"),
        (LMOTS_SHA256, 15, "LMOTS_SHA256"),
        (PKIX_RSA_PSS_2048_SHA256, 16, "PKIX_RSA_PSS_2048_SHA256"),
        (PKIX_RSA_PSS_3072_SHA256, 17, "PKIX_RSA_PSS_3072_SHA256"),
        (PKIX_RSA_PSS_4096_SHA256, 18, "PKIX_RSA_PSS_4096_SHA256"),
        (PKIX_ECDSA_P384_SHA_256, 19, "PKIX_ECDSA_P384_SHA_256"),
        (PKIX_ECDSA_P521_SHA_256, 20, "PKIX_ECDSA_P521_SHA_256"),
        (ML_DSA_65, 21, "ML_DSA_65"),
        (ML_DSA_87, 22, "ML_DSA_87"),
        (ML_DSA_44, 23, "ML_DSA_44"),
    ]
};

impl PublicKeyDetails {
    /// The proto3-JSON name, as written into canonical bodies.
    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(value, _, _)| *value == self)
            .map(|(_, _, name)| *name)
            .unwrap_or("PUBLIC_KEY_DETAILS_UNSPECIFIED")
    }

    /// The proto enum number.
    pub fn number(self) -> i32 {
        TABLE
            .iter()
            .find(|(value, _, _)| *value == self)
            .map(|(_, number, _)| *number)
            .unwrap_or(0)
    }

    /// Looks a value up by its proto name (case-sensitive, as protojson is).
    pub fn from_name(name: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|(_, _, n)| *n == name)
            .map(|(value, _, _)| *value)
    }

    /// Looks a value up by its proto number.
    pub fn from_number(number: i32) -> Option<Self> {
        TABLE
            .iter()
            .find(|(_, n, _)| *n == number)
            .map(|(value, _, _)| *value)
    }

    /// The hash this value selects, for values known to sigstore/sigstore's algorithm registry
    /// (step 3). `Some(None)` is a registry value without a prehash (pure Ed25519, step 5).
    pub fn registry_hash(self) -> Option<Option<HashAlgorithm>> {
        use PublicKeyDetails::*;
        match self {
            PKIX_RSA_PKCS1V15_2048_SHA256
            | PKIX_RSA_PKCS1V15_3072_SHA256
            | PKIX_RSA_PKCS1V15_4096_SHA256
            | PKIX_RSA_PSS_2048_SHA256
            | PKIX_RSA_PSS_3072_SHA256
            | PKIX_RSA_PSS_4096_SHA256
            | PKIX_ECDSA_P256_SHA_256
            | PKIX_ECDSA_P384_SHA_256
            | PKIX_ECDSA_P521_SHA_256 => Some(Some(HashAlgorithm::Sha256)),
            PKIX_ECDSA_P384_SHA_384 => Some(Some(HashAlgorithm::Sha384)),
            PKIX_ECDSA_P521_SHA_512 | PKIX_ED25519_PH => Some(Some(HashAlgorithm::Sha512)),
            PKIX_ED25519 => Some(None),
            _ => None,
        }
    }

    /// The key this value describes. Our server requires the submitted key to be exactly this
    /// (a deliberate difference from upstream, rekor-v2-api.md §5.2).
    pub fn expected_key(self) -> Option<KeyType> {
        use PublicKeyDetails::*;
        match self {
            PKIX_RSA_PKCS1V15_2048_SHA256 | PKIX_RSA_PSS_2048_SHA256 => {
                Some(KeyType::Rsa { bits: 2048 })
            }
            PKIX_RSA_PKCS1V15_3072_SHA256 | PKIX_RSA_PSS_3072_SHA256 => {
                Some(KeyType::Rsa { bits: 3072 })
            }
            PKIX_RSA_PKCS1V15_4096_SHA256 | PKIX_RSA_PSS_4096_SHA256 => {
                Some(KeyType::Rsa { bits: 4096 })
            }
            PKIX_ECDSA_P256_SHA_256 => Some(KeyType::EcdsaP256),
            PKIX_ECDSA_P384_SHA_384 | PKIX_ECDSA_P384_SHA_256 => Some(KeyType::EcdsaP384),
            PKIX_ECDSA_P521_SHA_512 | PKIX_ECDSA_P521_SHA_256 => Some(KeyType::EcdsaP521),
            PKIX_ED25519 | PKIX_ED25519_PH => Some(KeyType::Ed25519),
            _ => None,
        }
    }
}

impl fmt::Display for PublicKeyDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type and size of a parsed verifier key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA with the modulus size rounded up to whole bytes, as Go's `key.Size()*8`.
    Rsa {
        bits: usize,
    },
    EcdsaP224,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Ed25519,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::Rsa { bits } => write!(f, "RSA-{bits} key"),
            KeyType::EcdsaP224 => f.write_str("ECDSA key, curve P-224"),
            KeyType::EcdsaP256 => f.write_str("ECDSA key, curve P-256"),
            KeyType::EcdsaP384 => f.write_str("ECDSA key, curve P-384"),
            KeyType::EcdsaP521 => f.write_str("ECDSA key, curve P-521"),
            KeyType::Ed25519 => f.write_str("Ed25519 key"),
        }
    }
}

/// `common.v1.HashAlgorithm` values used in `data.algorithm` / `payloadHash.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HashAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    /// The proto name written into canonical bodies.
    pub fn proto_name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "SHA2_256",
            HashAlgorithm::Sha384 => "SHA2_384",
            HashAlgorithm::Sha512 => "SHA2_512",
        }
    }

    /// Digest length in bytes (step 6).
    pub fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }

    /// Hashes `message` (used for DSSE, where the server sees the message).
    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            HashAlgorithm::Sha256 => sha2::Sha256::digest(message).to_vec(),
            HashAlgorithm::Sha384 => sha2::Sha384::digest(message).to_vec(),
            HashAlgorithm::Sha512 => sha2::Sha512::digest(message).to_vec(),
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::Sha384 => "SHA-384",
            HashAlgorithm::Sha512 => "SHA-512",
        })
    }
}

/// Why an allow-list configuration was refused at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmPolicyError {
    #[error("unknown signing algorithm {0:?}")]
    Unknown(String),
    #[error("signing algorithm {0} is not allowed: the list may only narrow the default set")]
    NotInDefaultSet(PublicKeyDetails),
    #[error("the signing algorithm list is empty")]
    Empty,
}

/// The client signing-algorithm allow-list (`--client-signing-algorithms`, §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmPolicy {
    allowed: Vec<PublicKeyDetails>,
}

/// The default set (upstream since 2026-08-19) with the flag value naming each entry.
const DEFAULT_ALGORITHMS: [(PublicKeyDetails, &str); 7] = [
    (
        PublicKeyDetails::PKIX_RSA_PKCS1V15_2048_SHA256,
        "rsa-sign-pkcs1-2048-sha256",
    ),
    (
        PublicKeyDetails::PKIX_RSA_PKCS1V15_3072_SHA256,
        "rsa-sign-pkcs1-3072-sha256",
    ),
    (
        PublicKeyDetails::PKIX_RSA_PKCS1V15_4096_SHA256,
        "rsa-sign-pkcs1-4096-sha256",
    ),
    (
        PublicKeyDetails::PKIX_ECDSA_P256_SHA_256,
        "ecdsa-sha2-256-nistp256",
    ),
    (
        PublicKeyDetails::PKIX_ECDSA_P384_SHA_384,
        "ecdsa-sha2-384-nistp384",
    ),
    (
        PublicKeyDetails::PKIX_ECDSA_P521_SHA_512,
        "ecdsa-sha2-512-nistp521",
    ),
    (PublicKeyDetails::PKIX_ED25519_PH, "ed25519-ph"),
];

impl Default for AlgorithmPolicy {
    fn default() -> Self {
        AlgorithmPolicy {
            allowed: DEFAULT_ALGORITHMS
                .iter()
                .map(|(details, _)| *details)
                .collect(),
        }
    }
}

impl AlgorithmPolicy {
    /// A narrowed list. Values outside the default set (pure Ed25519, RSA-PSS, the deprecated
    /// mixed-hash ECDSA values) are refused, as upstream refuses them at start-up.
    pub fn new(
        allowed: impl IntoIterator<Item = PublicKeyDetails>,
    ) -> Result<Self, AlgorithmPolicyError> {
        let mut list = Vec::new();
        for details in allowed {
            if !DEFAULT_ALGORITHMS.iter().any(|(d, _)| *d == details) {
                return Err(AlgorithmPolicyError::NotInDefaultSet(details));
            }
            if !list.contains(&details) {
                list.push(details);
            }
        }
        if list.is_empty() {
            return Err(AlgorithmPolicyError::Empty);
        }
        Ok(AlgorithmPolicy { allowed: list })
    }

    /// Parses upstream flag values (`ecdsa-sha2-256-nistp256`, `ed25519-ph`, ...).
    pub fn from_flag_values<S: AsRef<str>>(values: &[S]) -> Result<Self, AlgorithmPolicyError> {
        let mut list = Vec::new();
        for value in values {
            let value = value.as_ref().trim();
            match DEFAULT_ALGORITHMS.iter().find(|(_, flag)| *flag == value) {
                Some((details, _)) => list.push(*details),
                None => return Err(AlgorithmPolicyError::Unknown(value.to_owned())),
            }
        }
        Self::new(list)
    }

    /// The flag values of the allowed algorithms, in configuration order.
    pub fn flag_values(&self) -> Vec<&'static str> {
        self.allowed
            .iter()
            .filter_map(|details| {
                DEFAULT_ALGORITHMS
                    .iter()
                    .find(|(d, _)| d == details)
                    .map(|(_, flag)| *flag)
            })
            .collect()
    }

    /// Whether `details` is on the list.
    pub fn allows(&self, details: PublicKeyDetails) -> bool {
        self.allowed.contains(&details)
    }

    /// The allowed values, in configuration order.
    pub fn allowed(&self) -> &[PublicKeyDetails] {
        &self.allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for (value, number, name) in TABLE {
            assert_eq!(PublicKeyDetails::from_name(name), Some(value));
            assert_eq!(PublicKeyDetails::from_number(number), Some(value));
            assert_eq!(value.name(), name);
            assert_eq!(value.number(), number);
        }
        assert_eq!(PublicKeyDetails::from_name("pkix_ed25519"), None);
        assert_eq!(PublicKeyDetails::from_number(99), None);
    }

    #[test]
    fn default_list_is_the_seven_of_section_5_1() {
        let policy = AlgorithmPolicy::default();
        assert_eq!(policy.allowed().len(), 7);
        assert!(!policy.allows(PublicKeyDetails::PKIX_ED25519));
        assert!(!policy.allows(PublicKeyDetails::PKIX_RSA_PSS_2048_SHA256));
        assert!(policy.allows(PublicKeyDetails::PKIX_ED25519_PH));
    }

    #[test]
    fn list_may_only_narrow() {
        assert_eq!(
            AlgorithmPolicy::new([PublicKeyDetails::PKIX_ED25519]),
            Err(AlgorithmPolicyError::NotInDefaultSet(
                PublicKeyDetails::PKIX_ED25519
            ))
        );
        assert_eq!(AlgorithmPolicy::new([]), Err(AlgorithmPolicyError::Empty));
        let narrowed =
            AlgorithmPolicy::from_flag_values(&["ecdsa-sha2-256-nistp256", "ed25519-ph"]).unwrap();
        assert_eq!(
            narrowed.allowed(),
            &[
                PublicKeyDetails::PKIX_ECDSA_P256_SHA_256,
                PublicKeyDetails::PKIX_ED25519_PH
            ]
        );
        assert!(AlgorithmPolicy::from_flag_values(&["ed25519"]).is_err());
        assert!(AlgorithmPolicy::from_flag_values(&["rsa-sign-pss-2048-sha256"]).is_err());
    }
}
