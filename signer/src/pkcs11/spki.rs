//! The public key a token holds, as the DER SubjectPublicKeyInfo the log publishes, built from
//! the public key object's `CKA_KEY_TYPE`, `CKA_EC_PARAMS` and `CKA_EC_POINT`.
//!
//! PKCS#11 describes an EC key by its curve (a DER OID, or for Edwards curves also the curve's
//! name as a PrintableString) and its point (a DER OCTET STRING around the encoded point). Some
//! modules return the point without the OCTET STRING; the two cannot be confused because the
//! lengths differ, so both are read.

use ed25519_dalek::pkcs8::EncodePublicKey;

use crate::{KeyAlgorithm, SignerError};

/// `CKA_EC_PARAMS` of P-256: the DER OID 1.2.840.10045.3.1.7 (prime256v1).
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `CKA_EC_PARAMS` of Ed25519 as the DER OID 1.3.101.112 (RFC 8410).
pub const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// `CKA_EC_PARAMS` of Ed25519 as the DER PrintableString "edwards25519" (PKCS#11 3.0).
pub const ED25519_NAME_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// The key type of a public key object, as far as a log cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKeyType {
    /// `CKK_EC`
    Ec,
    /// `CKK_EC_EDWARDS`
    EcEdwards,
}

/// The DER SPKI and algorithm of a token's public key.
pub fn spki_from_attributes(
    key_type: TokenKeyType,
    ec_params: &[u8],
    ec_point: &[u8],
) -> Result<(KeyAlgorithm, Vec<u8>), SignerError> {
    match key_type {
        TokenKeyType::Ec => {
            if ec_params != P256_PARAMS {
                return Err(SignerError::UnsupportedKey(format!(
                    "the token's EC key is not on P-256 (CKA_EC_PARAMS {})",
                    hex(ec_params)
                )));
            }
            let point = unwrap_point(ec_point, 65)?;
            let key = p256::PublicKey::from_sec1_bytes(point).map_err(|_| {
                SignerError::UnsupportedKey(
                    "CKA_EC_POINT is not an uncompressed P-256 point on the curve".into(),
                )
            })?;
            let der = p256::pkcs8::EncodePublicKey::to_public_key_der(&key)
                .map_err(|error| SignerError::UnsupportedKey(error.to_string()))?;
            Ok((KeyAlgorithm::EcdsaP256, der.into_vec()))
        }
        TokenKeyType::EcEdwards => {
            if ec_params != ED25519_OID_PARAMS && ec_params != ED25519_NAME_PARAMS {
                return Err(SignerError::UnsupportedKey(format!(
                    "the token's Edwards key is not Ed25519 (CKA_EC_PARAMS {})",
                    hex(ec_params)
                )));
            }
            let point = unwrap_point(ec_point, 32)?;
            let bytes: [u8; 32] = point
                .try_into()
                .map_err(|_| SignerError::UnsupportedKey("CKA_EC_POINT is not 32 bytes".into()))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| {
                SignerError::UnsupportedKey("CKA_EC_POINT is not an Ed25519 public key".into())
            })?;
            let der = key
                .to_public_key_der()
                .map_err(|error| SignerError::UnsupportedKey(error.to_string()))?;
            Ok((KeyAlgorithm::Ed25519, der.into_vec()))
        }
    }
}

/// The encoded point of `CKA_EC_POINT`: inside a DER OCTET STRING (short length form, which
/// covers both curves' sizes), or bare.
fn unwrap_point(ec_point: &[u8], point_len: usize) -> Result<&[u8], SignerError> {
    match ec_point {
        [0x04, len, point @ ..] if usize::from(*len) == point_len && point.len() == point_len => {
            Ok(point)
        }
        bare if bare.len() == point_len => Ok(bare),
        other => Err(SignerError::UnsupportedKey(format!(
            "CKA_EC_POINT is {} bytes, not a DER OCTET STRING of a {point_len}-byte point",
            other.len()
        ))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn octet_string(point: &[u8]) -> Vec<u8> {
        let mut der = vec![0x04, point.len() as u8];
        der.extend_from_slice(point);
        der
    }

    #[test]
    fn p256_point_becomes_its_spki() {
        let key = p256::SecretKey::from_slice(&[7; 32]).unwrap().public_key();
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false);
        let expected = p256::pkcs8::EncodePublicKey::to_public_key_der(&key).unwrap();
        for ec_point in [octet_string(point.as_bytes()), point.as_bytes().to_vec()] {
            let (algorithm, der) =
                spki_from_attributes(TokenKeyType::Ec, P256_PARAMS, &ec_point).unwrap();
            assert_eq!(algorithm, KeyAlgorithm::EcdsaP256);
            assert_eq!(der, expected.as_bytes());
        }
    }

    #[test]
    fn ed25519_point_becomes_its_spki_with_either_curve_name() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        let expected = key.to_public_key_der().unwrap();
        for params in [ED25519_OID_PARAMS, ED25519_NAME_PARAMS] {
            for ec_point in [octet_string(key.as_bytes()), key.as_bytes().to_vec()] {
                let (algorithm, der) =
                    spki_from_attributes(TokenKeyType::EcEdwards, params, &ec_point).unwrap();
                assert_eq!(algorithm, KeyAlgorithm::Ed25519);
                assert_eq!(der, expected.as_bytes());
            }
        }
    }

    #[test]
    fn other_curves_and_bad_points_are_refused() {
        // secp384r1
        let p384 = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        assert!(matches!(
            spki_from_attributes(TokenKeyType::Ec, &p384, &[0x04; 99]),
            Err(SignerError::UnsupportedKey(_))
        ));
        // Ed448
        assert!(
            spki_from_attributes(TokenKeyType::EcEdwards, b"\x13\x0aedwards448", &[1; 57]).is_err()
        );
        // A point that is not on P-256.
        let mut off_curve = vec![0x04; 65];
        off_curve[64] = 0x05;
        assert!(spki_from_attributes(TokenKeyType::Ec, P256_PARAMS, &off_curve).is_err());
        // Compressed points are not what CKA_EC_POINT holds for these keys.
        assert!(spki_from_attributes(TokenKeyType::Ec, P256_PARAMS, &[0x02; 33]).is_err());
        assert!(
            spki_from_attributes(TokenKeyType::EcEdwards, ED25519_OID_PARAMS, &[0; 31]).is_err()
        );
    }
}
