//! C2SP tlog-checkpoint: the checkpoint body (origin, size, base64 root, optional
//! extension lines), signing it as a signed note with one log signature line, and
//! verifying it (tlog-tiles.md §6, rekor-v2-api.md §8.1 and §11.5).

use crate::merkle::Hash;
use crate::note::{Note, NoteError, NoteSigner, NoteVerifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Why a checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The body does not follow tlog-checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The origin line is not the expected one.
    #[error("checkpoint origin {got:?} is not {expected:?}")]
    WrongOrigin { expected: String, got: String },
    /// The signed-note layer failed.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// rekor-v2-api.md §11.5: the extension line prefix the frozen marker uses.
pub const FROZEN_PREFIX: &str = "Log frozen \u{2014} ";

/// A checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines after the root, each non-empty, without newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint with no extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n[<extension>\n...]`.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a note text strictly: ≥ 3 non-empty lines, canonical decimal size,
    /// padded standard base64 of exactly 32 bytes, text ending in `\n`.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let lines = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("body must end with a newline"))?;
        let mut it = lines.split('\n');
        let origin = it.next().unwrap_or_default();
        let size = it
            .next()
            .ok_or(CheckpointError::Malformed("missing size line"))?;
        let root_line = it
            .next()
            .ok_or(CheckpointError::Malformed("missing root line"))?;
        let extensions: Vec<String> = it.map(str::to_string).collect();
        if origin.is_empty() || extensions.iter().any(|e| e.is_empty()) {
            return Err(CheckpointError::Malformed("empty line in body"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(CheckpointError::Malformed(
                "size is not a canonical decimal",
            ));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| CheckpointError::Malformed("size overflows"))?;
        let root_bytes = B64
            .decode(root_line)
            .map_err(|_| CheckpointError::Malformed("root is not base64"))?;
        let root: Hash = root_bytes
            .try_into()
            .map_err(|_| CheckpointError::Malformed("root is not 32 bytes"))?;
        if B64.encode(root) != root_line {
            return Err(CheckpointError::Malformed("root is not canonical base64"));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// Signs the body with the log's signer (one signature line), giving the
    /// serialised signed checkpoint.
    pub fn sign(&self, signer: &dyn NoteSigner) -> Result<Vec<u8>, CheckpointError> {
        Ok(Note::sign(&self.body(), &[signer])?.to_bytes())
    }

    /// Parses a signed checkpoint, checks its origin and verifies it with the log's
    /// verifier (other signature lines, e.g. witnesses, are kept but not checked).
    pub fn open(
        signed: &[u8],
        origin: &str,
        verifier: &dyn NoteVerifier,
    ) -> Result<(Self, Note), CheckpointError> {
        let note = Note::parse(signed)?;
        let cp = Self::parse_body(&note.text)?;
        if cp.origin != origin {
            return Err(CheckpointError::WrongOrigin {
                expected: origin.to_string(),
                got: cp.origin,
            });
        }
        note.verify(&[verifier])?;
        Ok((cp, note))
    }

    /// Whether the body carries the frozen marker extension line.
    pub fn is_frozen(&self) -> bool {
        self.extensions.iter().any(|e| e.starts_with(FROZEN_PREFIX))
    }
}

/// Appends cosignature lines (each `— name base64\n`, e.g. from a witness) to a
/// signed checkpoint, after checking each parses as a signature line and the result
/// parses as a signed note.
pub fn append_cosignatures(signed: &[u8], lines: &[String]) -> Result<Vec<u8>, CheckpointError> {
    let mut note = Note::parse(signed)?;
    for line in lines {
        let l = line.strip_suffix('\n').ok_or(CheckpointError::Malformed(
            "cosignature line must end with a newline",
        ))?;
        note.signatures
            .push(crate::note::NoteSignature::parse_line(l)?);
    }
    // The result must be a note that our own parser (and our peers) accept: this refuses
    // lines with control characters and going past MAX_SIGNATURES, which parse_line allows.
    let out = note.to_bytes();
    Note::parse(&out)?;
    Ok(out)
}

/// rekor-v2-api.md §11.5: the frozen marker line for `unix_seconds`, in Go's
/// `UnixDate` layout in UTC, e.g. `Log frozen — Mon Jan  2 15:04:05 UTC 2026`.
pub fn frozen_marker(unix_seconds: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{FROZEN_PREFIX}{} {} {:>2} {:02}:{:02}:{:02} UTC {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        year
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar (H. Hinnant's civil-from-days algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
