//! Signed notes and checkpoints (tlog-tiles.md §6–§8): `Note::parse`, `Checkpoint::parse_body`,
//! `Checkpoint::open`, signature lines, verifier keys and `append_cosignatures` on arbitrary
//! bytes.
//!
//! Properties: no panic; an accepted note re-serialises to exactly its input (the parser is
//! strict, so there is one encoding) and parses back to the same value; an accepted checkpoint
//! body is canonical (`body()` gives the input back); `open` accepts only what `parse` and
//! `parse_body` accept, with the expected origin, and re-opens its own serialisation; a parsed
//! verifier key parses back from its `to_vkey()`.

use std::sync::OnceLock;

use rekor_storage::checkpoint::{append_cosignatures, Checkpoint};
use rekor_storage::note::{
    verifier_from_spki_der, Ed25519NoteVerifier, Note, NoteSignature, NoteVerifier, VerifierKey,
    MAX_SIGNATURES,
};

/// (origin, verifier) pairs from the shared vectors: the tessera golden log (Ed25519), the
/// signed-note spec example (Ed25519), and the Rekor P-256 and RSA test keys under
/// `rekor-local`, so signatures of every type are parsed and checked.
fn verifiers() -> &'static [(String, Box<dyn NoteVerifier>)] {
    static VERIFIERS: OnceLock<Vec<(String, Box<dyn NoteVerifier>)>> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let tessera = crate::testdata("tessera-log/log.vkey");
        let examples: serde_json::Value =
            serde_json::from_str(&crate::testdata("c2sp/examples.json")).expect("examples.json");
        let spec_vkey = examples["signed_note"]["vkey"]
            .as_str()
            .expect("signed_note.vkey");
        let mut out: Vec<(String, Box<dyn NoteVerifier>)> = Vec::new();
        for vkey in [tessera.trim(), spec_vkey] {
            let verifier = Ed25519NoteVerifier::from_vkey(vkey).expect("a vector vkey parses");
            out.push((verifier.name().to_owned(), Box::new(verifier)));
        }
        for pem in [
            "ec-secp256r1-pub-key.pem",
            "rsa-pub-key.pem",
            "ed25519-pub-key.pem",
        ] {
            let der = crate::pem_der(&crate::testdata(&format!("rekor-tiles/pki/{pem}")));
            let verifier =
                verifier_from_spki_der("rekor-local", &der).expect("a vector key parses");
            out.push(("rekor-local".to_owned(), verifier));
        }
        out
    })
}

/// The checks for one input.
pub fn check(data: &[u8]) {
    check_note(data);
    for (origin, verifier) in verifiers() {
        check_open(data, origin, verifier.as_ref());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_body(text);
        check_line(text);
        check_vkey(text);
    }
    check_cosignatures(data);
}

fn check_note(data: &[u8]) {
    let Ok(note) = Note::parse(data) else {
        return;
    };
    assert!(
        note.text.ends_with('\n'),
        "note text without a final newline"
    );
    assert!((1..=MAX_SIGNATURES).contains(&note.signatures.len()));
    let bytes = note.to_bytes();
    assert_eq!(
        bytes,
        data,
        "an accepted note does not re-serialise to its input: {:?}",
        String::from_utf8_lossy(data)
    );
    assert_eq!(Note::parse(&bytes).as_ref(), Ok(&note));
    if let Ok(checkpoint) = Checkpoint::parse_body(&note.text) {
        assert_eq!(checkpoint.body(), note.text);
    }
    for (_, verifier) in verifiers() {
        // Any verdict is fine; it must not panic, whatever the signature bytes are.
        let _ = note.verify(&[verifier.as_ref()]);
    }
}

fn check_open(data: &[u8], origin: &str, verifier: &dyn NoteVerifier) {
    let Ok((checkpoint, note)) = Checkpoint::open(data, origin, verifier) else {
        return;
    };
    assert_eq!(checkpoint.origin, origin);
    assert_eq!(Note::parse(data).as_ref(), Ok(&note));
    assert_eq!(Checkpoint::parse_body(&note.text).as_ref(), Ok(&checkpoint));
    assert_eq!(checkpoint.body(), note.text);
    let reopened = Checkpoint::open(&note.to_bytes(), origin, verifier);
    assert_eq!(reopened, Ok((checkpoint, note)));
}

fn check_body(text: &str) {
    let Ok(checkpoint) = Checkpoint::parse_body(text) else {
        return;
    };
    assert_eq!(
        checkpoint.body(),
        text,
        "an accepted checkpoint body is not canonical"
    );
    assert!(!checkpoint.origin.is_empty());
    assert_eq!(Checkpoint::parse_body(&checkpoint.body()), Ok(checkpoint));
}

fn check_line(text: &str) {
    let Ok(signature) = NoteSignature::parse_line(text) else {
        return;
    };
    assert_eq!(
        signature.to_line(),
        format!("{text}\n"),
        "a signature line is not canonical"
    );
}

fn check_vkey(text: &str) {
    let Ok(key) = VerifierKey::parse(text) else {
        return;
    };
    assert_eq!(VerifierKey::parse(&key.to_vkey()), Ok(key.clone()));
    // Hex digits may be upper case in the input; otherwise the encoding is unique.
    assert_eq!(key.to_vkey().to_lowercase(), text.to_lowercase());
    let _ = Ed25519NoteVerifier::from_vkey(text);
}

/// The input split at its first newline: a signed note and one cosignature line.
fn check_cosignatures(data: &[u8]) {
    let Some(split) = data.iter().rposition(|b| *b == b'\n') else {
        return;
    };
    let Ok(line) = std::str::from_utf8(&data[split + 1..]) else {
        return;
    };
    let signed = &data[..=split];
    let line = format!("{line}\n");
    let Ok(out) = append_cosignatures(signed, std::slice::from_ref(&line)) else {
        return;
    };
    let before = Note::parse(signed).expect("append_cosignatures accepted an unparseable note");
    let after = Note::parse(&out).expect("append_cosignatures produced an unparseable note");
    assert_eq!(after.text, before.text);
    assert_eq!(after.signatures.len(), before.signatures.len() + 1);
}
