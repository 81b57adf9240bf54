//! Property tests of the parsers that see peer and client input: signed notes, checkpoints,
//! signature lines, verifier keys (tlog-tiles.md §6–§8) and tile paths (tlog-tiles.md §2).
//! They are the in-suite twins of the `note_parsing` and `tile_path_parsing` fuzz targets in
//! `fuzz/`, with the same properties:
//! - no input panics;
//! - the parsers are strict, so an accepted input is canonical: re-serialising it gives the
//!   input back, and parsing that gives the same value;
//! - `Checkpoint::open` accepts a mutated signed checkpoint only if its body is still the body
//!   that was signed;
//! - every valid tile id formats to a path that parses back to it.
//!
//! Case counts are moderate so the suite stays fast; `PROPTEST_CASES` raises them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use proptest::prelude::*;
use rekor_storage::checkpoint::{append_cosignatures, Checkpoint};
use rekor_storage::note::{
    verifier_from_spki_der, EcdsaP256NoteSigner, Ed25519NoteVerifier, Note, NoteSignature,
    NoteSigner, NoteVerifier, VerifierKey, MAX_SIGNATURES,
};
use rekor_storage::tiles::{
    parse_tile_path, BundleId, TileId, TilePath, MAX_TILE_LEVEL, TILE_WIDTH,
};

mod support;

use support::testdata;

fn pem_der(pem: &str) -> Vec<u8> {
    B64.decode(
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
    )
    .unwrap()
}

fn cases(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        ..ProptestConfig::default()
    }
}

/// A signed checkpoint from the vectors (or signed here) and the key that verifies it.
struct Signed {
    note: Vec<u8>,
    origin: String,
    verifier: Box<dyn NoteVerifier>,
}

/// Tessera's golden checkpoints (Ed25519), the signed-note spec example (Ed25519, not a
/// checkpoint) and a checkpoint signed here with the Rekor P-256 test key.
fn signed_notes() -> Vec<Signed> {
    let tessera_vkey = testdata("tessera-log/log.vkey");
    let tessera = || Box::new(Ed25519NoteVerifier::from_vkey(tessera_vkey.trim()).unwrap());
    let mut out: Vec<Signed> = ["0", "1", "7", "15"]
        .iter()
        .map(|n| Signed {
            note: testdata(&format!("tessera-log/checkpoint.{n}")).into_bytes(),
            origin: "example.com/log/testdata".into(),
            verifier: tessera(),
        })
        .collect();
    let examples: serde_json::Value =
        serde_json::from_str(&testdata("c2sp/examples.json")).unwrap();
    let spec = &examples["signed_note"];
    out.push(Signed {
        note: spec["signed_note"].as_str().unwrap().as_bytes().to_vec(),
        origin: spec["key_name"].as_str().unwrap().into(),
        verifier: Box::new(Ed25519NoteVerifier::from_vkey(spec["vkey"].as_str().unwrap()).unwrap()),
    });
    let pem = testdata("rekor-tiles/pki/ec-secp256r1-priv-key.pem");
    let key = p256::ecdsa::SigningKey::from(p256::SecretKey::from_sec1_pem(&pem).unwrap());
    let signer = EcdsaP256NoteSigner::new("rekor-local", key).unwrap();
    let mut checkpoint = Checkpoint::new("rekor-local", 70_000, [7; 32]);
    checkpoint.extensions.push("an extension line".into());
    out.push(Signed {
        note: checkpoint.sign(&signer).unwrap(),
        origin: "rekor-local".into(),
        verifier: verifier_from_spki_der(
            signer.name(),
            &pem_der(&testdata("rekor-tiles/pki/ec-secp256r1-pub-key.pem")),
        )
        .unwrap(),
    });
    out
}

// ---------------------------------------------------------------------------------------------
// The properties (the same as fuzz/src/note.rs).

fn check_note(data: &[u8]) -> Result<(), TestCaseError> {
    let Ok(note) = Note::parse(data) else {
        return Ok(());
    };
    prop_assert!(note.text.ends_with('\n'));
    prop_assert!((1..=MAX_SIGNATURES).contains(&note.signatures.len()));
    prop_assert_eq!(note.to_bytes(), data.to_vec(), "not canonical");
    prop_assert_eq!(Note::parse(&note.to_bytes()), Ok(note.clone()));
    if let Ok(checkpoint) = Checkpoint::parse_body(&note.text) {
        prop_assert_eq!(checkpoint.body(), note.text);
    }
    Ok(())
}

fn check_body(text: &str) -> Result<(), TestCaseError> {
    let Ok(checkpoint) = Checkpoint::parse_body(text) else {
        return Ok(());
    };
    prop_assert_eq!(checkpoint.body(), text, "not canonical");
    prop_assert_eq!(Checkpoint::parse_body(&checkpoint.body()), Ok(checkpoint));
    Ok(())
}

fn check_line(text: &str) -> Result<(), TestCaseError> {
    if let Ok(signature) = NoteSignature::parse_line(text) {
        prop_assert_eq!(signature.to_line(), format!("{text}\n"), "not canonical");
    }
    Ok(())
}

fn check_vkey(text: &str) -> Result<(), TestCaseError> {
    if let Ok(key) = VerifierKey::parse(text) {
        prop_assert_eq!(VerifierKey::parse(&key.to_vkey()), Ok(key.clone()));
        // Only the hex key ID may change case.
        prop_assert_eq!(key.to_vkey().to_lowercase(), text.to_lowercase());
    }
    let _ = Ed25519NoteVerifier::from_vkey(text);
    Ok(())
}

fn check_text(data: &[u8]) -> Result<(), TestCaseError> {
    check_note(data)?;
    if let Ok(text) = std::str::from_utf8(data) {
        check_body(text)?;
        check_line(text)?;
        check_vkey(text)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Notes and checkpoints.

/// Lines in the note alphabet: checkpoint-like lines, signature lines, junk.
fn note_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "[a-z./0-9]{0,16}",
        "(0|[1-9][0-9]{0,20})",
        "[A-Za-z0-9+/]{42,44}=?",
        "— [a-z.]{1,10} [A-Za-z0-9+/]{4,12}={0,2}",
        "—[ \t]?[a-z.+]{0,10}[ ]{1,2}[A-Za-z0-9+/=]{0,12}",
        "\\PC{0,8}",
        Just(String::new()),
    ];
    (prop::collection::vec(line, 0..8), any::<bool>()).prop_map(|(lines, final_newline)| {
        let mut text = lines.join("\n");
        if final_newline {
            text.push('\n');
        }
        text
    })
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_notes_are_canonical(
        data in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        check_text(&data)?;
    }

    #[test]
    fn arbitrary_strings_never_panic_and_accepted_notes_are_canonical(text in "\\PC{0,200}") {
        check_text(text.as_bytes())?;
    }

    #[test]
    fn note_shaped_text_never_panics_and_round_trips(text in note_like()) {
        check_text(text.as_bytes())?;
    }
}

/// One edit of a signed note.
#[derive(Debug, Clone)]
enum Edit {
    Overwrite(usize, char),
    Insert(usize, char),
    Delete(usize, usize),
    DuplicateLine(usize),
    DropLine(usize),
    SwapLines(usize, usize),
    /// Cut at a byte offset (possibly inside a UTF-8 sequence: the em dash is 3 bytes).
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = prop_oneof![
        Just('\n'),
        Just(' '),
        Just('—'),
        Just('0'),
        Just('='),
        Just('+'),
        Just('\t'),
        Just('\u{0}'),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Overwrite(i, c)),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Insert(i, c)),
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        any::<usize>().prop_map(Edit::DropLine),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::SwapLines(i, j)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(note: &[u8], edit: &Edit) -> Vec<u8> {
    let text = String::from_utf8(note.to_vec()).unwrap();
    let mut chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    match edit {
        Edit::Overwrite(i, c) => {
            let at = i % chars.len();
            chars[at] = *c;
        }
        Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), *c),
        Edit::Delete(i, n) => {
            let at = i % chars.len();
            chars.drain(at..(at + n).min(chars.len()));
        }
        Edit::DuplicateLine(i) => {
            let at = i % lines.len();
            lines.insert(at, lines[at]);
            return lines.concat().into_bytes();
        }
        Edit::DropLine(i) => {
            lines.remove(i % lines.len());
            return lines.concat().into_bytes();
        }
        Edit::SwapLines(i, j) => {
            let n = lines.len();
            lines.swap(i % n, j % n);
            return lines.concat().into_bytes();
        }
        Edit::Truncate(i) => return note[..i % (note.len() + 1)].to_vec(),
    }
    chars.into_iter().collect::<String>().into_bytes()
}

#[test]
fn edits_do_what_they_say() {
    let note = b"a\nb\n\n\xe2\x80\x94 k AAAA\n";
    assert_eq!(
        apply(note, &Edit::SwapLines(0, 1)),
        b"b\na\n\n\xe2\x80\x94 k AAAA\n"
    );
    assert_eq!(
        apply(note, &Edit::DropLine(2)),
        b"a\nb\n\xe2\x80\x94 k AAAA\n"
    );
    assert_eq!(
        apply(note, &Edit::Overwrite(0, 'z')),
        b"z\nb\n\n\xe2\x80\x94 k AAAA\n"
    );
    assert_eq!(apply(note, &Edit::Truncate(7)), b"a\nb\n\n\xe2\x80");
    // The seeds open, so the property below is not vacuous.
    for signed in signed_notes() {
        let note = Note::parse(&signed.note).unwrap();
        assert!(note.verify(&[signed.verifier.as_ref()]).is_ok());
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// A signature binds the body: an edit that changes the body must make `open` fail, and
    /// whatever `open` accepts is canonical.
    #[test]
    fn edited_signed_notes_open_only_with_their_signed_body(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..4),
        cosignature in "— [a-z.\\x00-\\x1f\\x7f]{1,10} [A-Za-z0-9+/]{8}\n",
    ) {
        let seeds = signed_notes();
        let signed = &seeds[seed.index(seeds.len())];
        let original = Note::parse(&signed.note).unwrap();
        let mut data = signed.note.clone();
        for edit in &edits {
            if data.is_empty() || std::str::from_utf8(&data).is_err() {
                break;
            }
            data = apply(&data, edit);
        }
        check_text(&data)?;
        if let Ok(note) = Note::parse(&data) {
            // Any verdict, but no panic, whatever the signature bytes became.
            let _ = note.verify(&[signed.verifier.as_ref()]);
        }
        if let Ok((checkpoint, note)) =
            Checkpoint::open(&data, &signed.origin, signed.verifier.as_ref())
        {
            prop_assert_eq!(&note.text, &original.text, "a changed body verified");
            prop_assert_eq!(checkpoint.body(), note.text.clone());
            prop_assert_eq!(note.to_bytes(), data.clone());
        }
        // A cosignature line appended to whatever this became: the result still parses.
        if let Ok(out) = append_cosignatures(&data, std::slice::from_ref(&cosignature)) {
            let before = Note::parse(&data).unwrap();
            let after = Note::parse(&out);
            prop_assert!(after.is_ok(), "append_cosignatures output does not parse: {:?}", after);
            let after = after.unwrap();
            prop_assert_eq!(after.text, before.text);
            prop_assert_eq!(after.signatures.len(), before.signatures.len() + 1);
        }
    }

    /// Every checkpoint body the log can write parses back to itself.
    #[test]
    fn checkpoint_bodies_round_trip(
        origin in "[^\n]{1,30}",
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        extensions in prop::collection::vec("[^\n]{1,30}", 0..3),
    ) {
        let mut checkpoint = Checkpoint::new(&origin, size, root);
        checkpoint.extensions = extensions;
        let body = checkpoint.body();
        prop_assert_eq!(Checkpoint::parse_body(&body), Ok(checkpoint));
    }

    /// Near-valid bodies: sizes and roots written almost canonically.
    #[test]
    fn near_valid_checkpoint_bodies_are_rejected_or_canonical(
        origin in "[a-z./ ]{0,12}",
        size in prop_oneof![
            "[0-9]{1,22}",
            "[+ -]?[0-9]{1,5}[ ]?",
            "0[0-9]{1,3}",
            "0x[0-9a-f]{1,4}",
            Just("18446744073709551616".to_owned()),
            Just("18446744073709551615".to_owned()),
        ],
        root in prop_oneof![
            any::<[u8; 32]>().prop_map(|r| B64.encode(r)),
            any::<[u8; 32]>().prop_map(|r| B64.encode(r).trim_end_matches('=').to_owned()),
            any::<[u8; 32]>().prop_map(|r| base64::engine::general_purpose::URL_SAFE.encode(r)),
            "[A-Za-z0-9+/]{43}[A-Za-z0-9+/=]",
            any::<Vec<u8>>().prop_map(|r| B64.encode(r)),
        ],
        tail in prop_oneof![Just(String::new()), "[a-z ]{0,8}\n", Just("\n".to_owned())],
    ) {
        check_body(&format!("{origin}\n{size}\n{root}\n{tail}"))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Tile paths.

fn check_tail(tail: &str) -> Result<(), TestCaseError> {
    let Ok(parsed) = parse_tile_path(tail) else {
        return Ok(());
    };
    let (path, level, width) = match parsed {
        TilePath::Hash(id) => (id.path(), id.level, id.width),
        TilePath::Entries(id) => (id.path(), 0, id.width),
    };
    prop_assert!(level <= MAX_TILE_LEVEL);
    prop_assert!((1..=TILE_WIDTH).contains(&width));
    prop_assert_eq!(&path, &format!("tile/{tail}"), "not canonical");
    prop_assert_eq!(parse_tile_path(&path["tile/".len()..]), Ok(parsed));
    Ok(())
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn arbitrary_tile_paths_never_panic_and_accepted_ones_are_canonical(tail in "\\PC{0,40}") {
        check_tail(&tail)?;
    }

    #[test]
    fn tile_shaped_paths_are_rejected_or_canonical(
        tail in "(entries|[0-9]{1,3}|0[0-9])/(x?[0-9]{2,4}/){0,8}x?[0-9]{2,4}(\\.p/[0-9]{1,4})?/?",
    ) {
        check_tail(&tail)?;
    }

    #[test]
    fn tile_ids_round_trip_through_their_paths(
        level in 0..=MAX_TILE_LEVEL,
        index in prop_oneof![any::<u64>(), 0u64..2000],
        width in 1..=TILE_WIDTH,
    ) {
        let id = TileId::new(level, index, width).unwrap();
        let path = id.path();
        prop_assert_eq!(parse_tile_path(&path["tile/".len()..]), Ok(TilePath::Hash(id)));
        let bundle = BundleId::new(index, width).unwrap();
        let path = bundle.path();
        prop_assert_eq!(parse_tile_path(&path["tile/".len()..]), Ok(TilePath::Entries(bundle)));
    }
}

#[test]
fn the_tile_path_check_can_fail() {
    // Guards the property helper itself: a non-canonical spelling would be reported.
    assert!(parse_tile_path("0/000").is_ok());
    assert!(check_tail("0/000").is_ok());
    assert!(parse_tile_path("0/0000").is_err());
}

/// The fuzz property "append_cosignatures output parses" (found while writing it, before the
/// fuzzer ran): appending to a note already at the signature limit made a note that
/// `Note::parse` refuses.
#[test]
fn cosignatures_beyond_the_signature_limit_are_refused() {
    let line = "— witness.example AAAAAAAAAAAAAAAA\n".to_owned();
    let mut note = "origin\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n".to_owned();
    for _ in 0..MAX_SIGNATURES - 1 {
        note.push_str(&line);
    }
    let full = append_cosignatures(note.as_bytes(), std::slice::from_ref(&line)).unwrap();
    assert_eq!(Note::parse(&full).unwrap().signatures.len(), MAX_SIGNATURES);
    assert!(append_cosignatures(&full, std::slice::from_ref(&line)).is_err());
}

/// Found by the `note_parsing` fuzz target: a cosignature line whose key name holds control
/// characters passed `NoteSignature::parse_line`, and the note it was appended to no longer
/// parsed.
#[test]
fn cosignatures_with_control_characters_are_refused() {
    let signed = testdata("tessera-log/checkpoint.1");
    let line = "— witness\u{0}\u{1b}.example AAAAAAAAAAAAAAAA\n".to_owned();
    assert!(NoteSignature::parse_line(line.trim_end_matches('\n')).is_ok());
    assert!(append_cosignatures(signed.as_bytes(), std::slice::from_ref(&line)).is_err());
    let clean = "— witness.example AAAAAAAAAAAAAAAA\n".to_owned();
    let out = append_cosignatures(signed.as_bytes(), std::slice::from_ref(&clean)).unwrap();
    assert_eq!(Note::parse(&out).unwrap().signatures.len(), 2);
}
