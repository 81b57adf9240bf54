//! Key-ID, log-ID, signed-note and cosignature vectors:
//! `testdata/rekor-tiles/vectors.json` (sigstore/rekor-tiles `pkg/note` tests, Apache-2.0)
//! and `testdata/c2sp/examples.json` (C2SP spec examples).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rekor_storage::checkpoint::{self, Checkpoint};
use rekor_storage::cosignature::{CosignatureSigner, CosignatureVerifier};
use rekor_storage::merkle::EMPTY_ROOT;
use rekor_storage::note::{
    self, EcdsaP256NoteSigner, Ed25519NoteSigner, Ed25519NoteVerifier, Note, NoteError, NoteSigner,
    NoteVerifier, RsaNoteVerifier,
};
use serde_json::Value;

mod support;

use support::testdata as text;

fn json(rel: &str) -> Value {
    serde_json::from_str(&text(rel)).unwrap()
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(b64).unwrap()
}

#[test]
fn note_key_hash_vectors() {
    let v = json("rekor-tiles/vectors.json");
    let kh = &v["note_key_hash"];
    let origin = kh["origin"].as_str().unwrap();
    let cases = kh["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let der = pem_to_der(&text(&format!(
            "rekor-tiles/{}",
            case["public_key_file"].as_str().unwrap()
        )));
        let id = note::log_id(origin, &der).unwrap();
        assert_eq!(
            hex::encode(id),
            case["expected_log_id_hex"].as_str().unwrap(),
            "{name}"
        );
        let verifier = note::verifier_from_spki_der(origin, &der).unwrap();
        assert_eq!(
            u64::from(verifier.key_id()),
            case["expected_key_id_uint32"].as_u64().unwrap(),
            "{name}"
        );
        // The signers loaded from the private keys agree.
        let priv_pem = text(&format!(
            "rekor-tiles/{}",
            case["private_key_file"].as_str().unwrap()
        ));
        match name {
            "ed25519" | "ecdsa" => {
                let signer = note::signer_from_pem(origin, &priv_pem).unwrap();
                assert_eq!(hex::encode(signer.log_id()), hex::encode(id));
                assert_eq!(signer.public_key_der(), der);
                let n = Note::sign("hello\n", &[signer.as_ref()]).unwrap();
                n.verify(&[verifier.as_ref()]).unwrap();
            }
            "rsa" => {
                // We only verify RSA; sign with the rsa crate to exercise the verifier.
                use rsa::pkcs8::DecodePrivateKey;
                use signature::{SignatureEncoding, Signer};
                let sk = rsa::RsaPrivateKey::from_pkcs8_pem(&priv_pem).unwrap();
                let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(sk);
                let sig = signer.sign(b"hello\n").to_vec();
                let rv = RsaNoteVerifier::from_spki_der(origin, &der).unwrap();
                assert!(rv.verify(b"hello\n", &sig));
                assert!(!rv.verify(b"hellO\n", &sig));
            }
            other => panic!("unexpected case {other}"),
        }
    }
}

#[test]
fn witness_testdata_vectors() {
    let v = json("rekor-tiles/vectors.json");
    let w = &v["witness_testdata"];
    let pem = text("rekor-tiles/pki/ed25519-priv-key.pem");
    let log = Ed25519NoteSigner::from_pkcs8_pem(w["log_origin"].as_str().unwrap(), &pem).unwrap();
    assert_eq!(log.verifier_key(), w["log_vkey"].as_str().unwrap());
    assert_eq!(
        B64.encode(log.log_id()),
        w["log_id_full_sha256_b64"].as_str().unwrap()
    );

    let witness =
        CosignatureSigner::from_note_key(w["witness_signer_key"].as_str().unwrap()).unwrap();
    let verifier = CosignatureVerifier::from_vkey(w["witness_vkey"].as_str().unwrap()).unwrap();
    let cp = Checkpoint::new("rekor-local", 0, EMPTY_ROOT);
    let line = witness.cosign(&cp.body(), 1_700_000_000).unwrap();
    assert_eq!(
        verifier.verify_signature(&cp.body(), &line).unwrap(),
        1_700_000_000
    );
    assert!(verifier
        .verify_signature(&Checkpoint::new("rekor-local", 1, EMPTY_ROOT).body(), &line)
        .is_err());
    // The cosigned checkpoint verifies with both the log key and the witness key.
    let signed = cp.sign(&log).unwrap();
    let cosigned = checkpoint::append_cosignatures(&signed, &[line.to_line()]).unwrap();
    let note = Note::parse(&cosigned).unwrap();
    assert_eq!(note.signatures.len(), 2);
    assert_eq!(
        note.verify(&[&log.verifier(), &verifier]).unwrap(),
        vec![0, 1]
    );
    // The witness's own vkey (type 0x04) round-trips to an equivalent verifier.
    let v4 = CosignatureVerifier::from_vkey(&witness.verifier_key()).unwrap();
    assert_eq!(v4.key_id(), verifier.key_id());
}

/// rekor-v2-api.md §15.4: the empty-tree checkpoint with the test key, byte for byte.
#[test]
fn empty_tree_checkpoint_vector() {
    let pem = text("rekor-tiles/pki/ed25519-priv-key.pem");
    let log = Ed25519NoteSigner::from_pkcs8_pem("rekor-local", &pem).unwrap();
    let want = "rekor-local\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n\u{2014} rekor-local 2AtEIMW9FcaEMSaxW3Q+uG1WCwP65vde3Rllsrhb+D06rjMtNKEhhkLXmkJ4lkyWpuZpiNC29calCGi2lS9Y8iCbmQg=\n";
    let got = Checkpoint::new("rekor-local", 0, EMPTY_ROOT)
        .sign(&log)
        .unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), want);
}

#[test]
fn clients_md_checkpoint_verifies() {
    let v = json("rekor-tiles/vectors.json");
    let c = &v["clients_md_example"];
    let env = c["checkpoint_envelope"].as_str().unwrap();
    let verifier =
        Ed25519NoteVerifier::from_vkey(c["checkpoint_verifier_vkey"].as_str().unwrap()).unwrap();
    let (cp, _) = Checkpoint::open(env.as_bytes(), "rekor-local", &verifier).unwrap();
    assert_eq!(cp.size, 1);
}

#[test]
fn c2sp_signed_note_example() {
    let v = json("c2sp/examples.json");
    let sn = &v["signed_note"];
    let verifier = Ed25519NoteVerifier::from_vkey(sn["vkey"].as_str().unwrap()).unwrap();
    assert_eq!(
        format!("{:08x}", verifier.key_id()),
        sn["key_id_hex"].as_str().unwrap()
    );
    let note = Note::parse(sn["signed_note"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(note.text, sn["note_text"].as_str().unwrap());
    note.verify(&[&verifier]).unwrap();
    assert_eq!(
        note.to_bytes(),
        sn["signed_note"].as_str().unwrap().as_bytes()
    );

    // A tampered text fails with the known key; an unknown key alone is not enough.
    let mut bad = note.clone();
    bad.text = "This is an example message!\n".into();
    assert!(matches!(
        bad.verify(&[&verifier]),
        Err(NoteError::BadSignature { .. })
    ));
    let other = Ed25519NoteSigner::generate("example.com/foo")
        .unwrap()
        .verifier();
    assert_eq!(note.verify(&[&other]), Err(NoteError::NoKnownSignature));
}

#[test]
fn c2sp_format_only_examples_parse() {
    let v = json("c2sp/examples.json");
    let f = &v["format_only_examples"];
    let intro = f["signed_note_intro"]["signed_note"].as_str().unwrap();
    let note = Note::parse(intro.as_bytes()).unwrap();
    assert_eq!(
        note.text,
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    );
    assert_eq!(note.signatures[0].name, "quasimodo.example/salvatore");
    let c = &f["checkpoint"];
    let note = Note::parse(c["signed_note"].as_str().unwrap().as_bytes()).unwrap();
    let cp = Checkpoint::parse_body(&note.text).unwrap();
    assert_eq!(cp.origin, c["origin"].as_str().unwrap());
    assert_eq!(cp.size, c["tree_size"].as_u64().unwrap());
    assert_eq!(B64.encode(cp.root), c["root_hash_b64"].as_str().unwrap());
}

#[test]
fn malformed_notes_are_rejected() {
    let good = "a\n\n\u{2014} k AAAAAAE=\n";
    assert!(Note::parse(good.as_bytes()).is_ok());
    for bad in [
        "a\n\u{2014} k AAAAAAE=\n",     // no blank line
        "a\n\n\u{2014} k AAAAAAE=",     // no final newline
        "a\n\n",                        // no signatures
        "a\n\n- k AAAAAAE=\n",          // hyphen, not em dash
        "a\n\n\u{2014}k AAAAAAE=\n",    // no space after the dash
        "a\n\n\u{2014} k AAAAAA==\n",   // payload shorter than 5 bytes
        "a\n\n\u{2014} k+x AAAAAAE=\n", // '+' in the name
        "a\n\n\u{2014} k !!!\n",        // not base64
        "a\r\n\n\u{2014} k AAAAAAE=\n", // control character
        "a\n\n\u{2014} k AAAAAAE=\n\n", // blank line after signatures
    ] {
        assert!(Note::parse(bad.as_bytes()).is_err(), "{bad:?}");
    }
    assert!(Note::parse(b"a\n\n\xff k AAAAAAE=\n").is_err());
}

#[test]
fn malformed_checkpoint_bodies_are_rejected() {
    let root = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    assert!(Checkpoint::parse_body(&format!("o\n0\n{root}\n")).is_ok());
    assert!(Checkpoint::parse_body(&format!("o\n0\n{root}\next\n")).is_ok());
    for bad in [
        format!("o\n0\n{root}"),
        format!("\n0\n{root}\n"),
        format!("o\n00\n{root}\n"),
        format!("o\n-1\n{root}\n"),
        format!("o\n1 \n{root}\n"),
        "o\n0\nAAAA\n".to_string(),
        format!("o\n0\n{}\n", root.trim_end_matches('=')),
        format!("o\n0\n{root}\n\n"),
        "o\n0\n".to_string(),
        format!("o\n99999999999999999999\n{root}\n"),
    ] {
        assert!(Checkpoint::parse_body(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn frozen_marker_uses_go_unix_date() {
    // 2006-01-02T15:04:05Z is Go's reference time.
    assert_eq!(
        checkpoint::frozen_marker(1_136_214_245),
        "Log frozen \u{2014} Mon Jan  2 15:04:05 UTC 2006"
    );
    assert_eq!(
        checkpoint::frozen_marker(0),
        "Log frozen \u{2014} Thu Jan  1 00:00:00 UTC 1970"
    );
    let mut cp = Checkpoint::new("o", 1, EMPTY_ROOT);
    assert!(!cp.is_frozen());
    cp.extensions.push(checkpoint::frozen_marker(1_767_225_600));
    assert!(cp.is_frozen());
    assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap(), cp);
}

#[test]
fn generated_keys_round_trip() {
    let ed = Ed25519NoteSigner::generate("log.example").unwrap();
    let again = Ed25519NoteSigner::from_note_key(&ed.to_note_key()).unwrap();
    assert_eq!(again.verifier_key(), ed.verifier_key());
    let pem = ed.to_pkcs8_pem().unwrap();
    let from_pem = note::signer_from_pem("log.example", &pem).unwrap();
    assert_eq!(from_pem.log_id(), ed.log_id());
    assert_eq!(
        note::log_id("log.example", &ed.public_key_der()).unwrap(),
        ed.log_id()
    );

    let ec = EcdsaP256NoteSigner::generate("log.example").unwrap();
    let pem = ec.to_pkcs8_pem().unwrap();
    let from_pem = note::signer_from_pem("log.example", &pem).unwrap();
    assert_eq!(from_pem.log_id(), ec.log_id());
    let cp = Checkpoint::new("log.example", 3, [1; 32]);
    let signed = cp.sign(&ec).unwrap();
    let (opened, _) = Checkpoint::open(&signed, "log.example", &ec.verifier()).unwrap();
    assert_eq!(opened, cp);
    assert!(matches!(
        Checkpoint::open(&signed, "other.example", &ec.verifier()),
        Err(checkpoint::CheckpointError::WrongOrigin { .. })
    ));
    // Wrong key ID in a vkey is rejected.
    let vk = ed.verifier_key();
    let tampered = vk.replacen(&vk[12..20], "00000000", 1);
    assert!(Ed25519NoteVerifier::from_vkey(&tampered).is_err());
}
