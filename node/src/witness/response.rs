//! What the log takes from a witness's `200` answer: at most one cosignature line, by that
//! witness's own key, that verifies over the checkpoint we sent.
//!
//! A witness is not trusted to be well-behaved. Each of its lines would become a signature line of
//! the published note, and a note has at most `MAX_SIGNATURES` of them: a witness answering with
//! its line 200 times used to make the note unpublishable. So the answer is bounded in bytes
//! (while it is read) and in lines (before any is parsed), lines under other keys, copies and
//! lines that do not verify are dropped and counted, and a line is parsed and verified only while
//! no good one has been found: 200 copies cost one signature check.

use rekor_storage::cosignature::CosignatureVerifier;
use rekor_storage::note::{NoteSignature, NoteVerifier};

/// A witness's answer is a few signature lines; anything longer is not a witness.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Lines of an answer that are looked at; the rest are dropped unparsed. A witness has one key,
/// and may add a few lines of other kinds (e.g. a `subtree/v1` signature).
pub const MAX_RESPONSE_LINES: usize = 16;

/// The outcome of reading one answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selected {
    /// The witness's verified cosignature line, with its newline.
    pub line: Option<String>,
    /// Lines that were not taken: copies, other keys, bad signatures, junk, beyond the bounds.
    pub dropped: usize,
}

/// Picks the first line of `body` that verifies as `verifier`'s `cosignature/v1` over
/// `note_text`; counts every other non-empty line as dropped.
pub fn select_cosignature(verifier: &CosignatureVerifier, note_text: &str, body: &str) -> Selected {
    let mut selected = Selected::default();
    for (number, line) in body
        .split_inclusive('\n')
        .filter(|line| !line.trim().is_empty())
        .enumerate()
    {
        let take = number < MAX_RESPONSE_LINES
            && selected.line.is_none()
            && line.ends_with('\n')
            && is_own_line(verifier, note_text, line);
        if take {
            selected.line = Some(line.to_owned());
        } else {
            selected.dropped += 1;
        }
    }
    selected
}

/// Whether `line` is a signature by this key (checked before the signature itself) that
/// verifies over `note_text`.
fn is_own_line(verifier: &CosignatureVerifier, note_text: &str, line: &str) -> bool {
    let Ok(signature) = NoteSignature::parse_line(line.trim_end_matches('\n')) else {
        return false;
    };
    signature.name == verifier.name()
        && signature.key_id == verifier.key_id()
        && verifier.verify_signature(note_text, &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekor_storage::cosignature::CosignatureSigner;

    const TEXT: &str = "log.example\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    fn signer(seed: u8) -> CosignatureSigner {
        CosignatureSigner::new(
            "witness.example",
            ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
        )
        .unwrap()
    }

    fn verifier(signer: &CosignatureSigner) -> CosignatureVerifier {
        CosignatureVerifier::from_vkey(&signer.verifier_key()).unwrap()
    }

    fn line(signer: &CosignatureSigner, text: &str, timestamp: u64) -> String {
        signer.cosign(text, timestamp).unwrap().to_line()
    }

    #[test]
    fn one_good_line_is_taken() {
        let key = signer(1);
        let good = line(&key, TEXT, 10);
        let selected = select_cosignature(&verifier(&key), TEXT, &good);
        assert_eq!(
            selected,
            Selected {
                line: Some(good),
                dropped: 0
            }
        );
    }

    #[test]
    fn copies_and_other_timestamps_are_dropped_after_the_first() {
        let key = signer(1);
        let first = line(&key, TEXT, 10);
        let mut body = first.repeat(200);
        body.push_str(&line(&key, TEXT, 11));
        let selected = select_cosignature(&verifier(&key), TEXT, &body);
        assert_eq!(selected.line.as_deref(), Some(first.as_str()));
        assert_eq!(selected.dropped, 200);
    }

    #[test]
    fn junk_other_keys_and_bad_signatures_are_dropped() {
        let key = signer(1);
        let good = line(&key, TEXT, 10);
        let body = [
            "not a signature line\n".to_owned(),
            line(&signer(2), TEXT, 10),
            // Right key, wrong text: does not verify.
            line(
                &key,
                "log.example\n6\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                10,
            ),
            "\u{2014} witness.example AAAA\n".to_owned(),
            "\n".to_owned(),
            good.clone(),
            // No newline: not a complete line.
            good.trim_end().to_owned(),
        ]
        .concat();
        let selected = select_cosignature(&verifier(&key), TEXT, &body);
        assert_eq!(selected.line, Some(good));
        assert_eq!(selected.dropped, 5);
    }

    #[test]
    fn a_good_line_past_the_line_bound_is_not_looked_at() {
        let key = signer(1);
        let good = line(&key, TEXT, 10);
        let mut body = "junk\n".repeat(MAX_RESPONSE_LINES);
        body.push_str(&good);
        let selected = select_cosignature(&verifier(&key), TEXT, &body);
        assert_eq!(selected.line, None);
        assert_eq!(selected.dropped, MAX_RESPONSE_LINES + 1);

        // One line earlier, it is taken.
        let mut body = "junk\n".repeat(MAX_RESPONSE_LINES - 1);
        body.push_str(&good);
        assert_eq!(
            select_cosignature(&verifier(&key), TEXT, &body).line,
            Some(good)
        );
    }
}
