//! `test-witness`: a small C2SP tlog-witness server **for tests only** (tlog-tiles.md §10).
//!
//! It witnesses one log: it checks the log's signature on each checkpoint with the given log
//! vkey, checks the consistency proof from the size it last cosigned (kept in memory, starting at
//! 0), answers `409` with its size when the request's `old` differs, and cosigns with a
//! `cosignature/v1` key. It has no persistence, no rate limits and speaks just enough HTTP/1.1
//! (one request per connection) for the node's witness client; do not run it for real.
//!
//! ```text
//! test-witness --listen 127.0.0.1:PORT --key 'PRIVATE+KEY+name+id+...' --log-vkey 'origin+id+...'
//!              [--copies N] [--claim-size N]
//! ```
//!
//! `--key` may also be `@FILE` (a file holding the note private key, as in
//! testdata/rekor-tiles/witness/private.key).
//!
//! Adversarial modes, for the log's defences against witnesses:
//! - `--copies N` (N > 1): a `200` carries its cosignature line N times, then a junk line and a
//!   cosignature by a key of no policy;
//! - `--claim-size N`: it starts as if it had cosigned a tree of N leaves of this log (with a
//!   made-up root), so it answers the log with `409` and size N: what a witness shows a log that
//!   was rolled back, or one that forked from a log that grew to N.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rekor_storage::checkpoint::Checkpoint;
use rekor_storage::cosignature::CosignatureSigner;
use rekor_storage::merkle::{self, Hash};
use rekor_storage::note::{Ed25519NoteSigner, Ed25519NoteVerifier, Note};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// tlog-witness caps consistency proofs at 63 lines.
const MAX_PROOF_LINES: usize = 63;

/// The one log this witness follows.
struct Witness {
    origin: String,
    log_verifier: Ed25519NoteVerifier,
    signer: CosignatureSigner,
    /// The size and root last cosigned; updated under the same lock as the check.
    latest: Mutex<(u64, Hash)>,
    /// Times the cosignature line is repeated in an answer (`--copies`).
    copies: usize,
    /// A key of no policy, for the junk of `--copies`.
    stranger: CosignatureSigner,
}

/// An HTTP answer: status, content type, body.
type Answer = (u16, &'static str, String);

fn text(status: u16, body: impl Into<String>) -> Answer {
    (status, "text/plain; charset=utf-8", body.into())
}

impl Witness {
    async fn add_checkpoint(&self, body: &str) -> Answer {
        let Some((head, signed)) = body.split_once("\n\n") else {
            return text(400, "missing blank line after the proof\n");
        };
        let mut head_lines = head.split('\n');
        let old = match head_lines.next().and_then(|l| l.strip_prefix("old ")) {
            Some(digits) => match digits.parse::<u64>() {
                Ok(old) => old,
                Err(_) => return text(400, "bad old line\n"),
            },
            None => return text(400, "first line must be `old <size>`\n"),
        };
        let mut proof = Vec::new();
        for line in head_lines {
            let Some(hash) = B64
                .decode(line)
                .ok()
                .and_then(|bytes| Hash::try_from(bytes).ok())
            else {
                return text(400, "bad proof line\n");
            };
            proof.push(hash);
        }
        if proof.len() > MAX_PROOF_LINES {
            return text(400, "too many proof lines\n");
        }
        let Ok(note) = Note::parse(signed.as_bytes()) else {
            return text(400, "malformed checkpoint note\n");
        };
        let Ok(checkpoint) = Checkpoint::parse_body(&note.text) else {
            return text(400, "malformed checkpoint body\n");
        };
        if checkpoint.origin != self.origin {
            return text(404, "unknown log\n");
        }
        if note.verify(&[&self.log_verifier]).is_err() {
            return text(403, "no valid signature by the log's key\n");
        }
        if old > checkpoint.size {
            return text(400, "old is larger than the checkpoint size\n");
        }

        // Check and update under one lock, so racing requests cannot roll the size back.
        let mut latest = self.latest.lock().await;
        let (size, root) = *latest;
        if old != size {
            return (409, "text/x.tlog.size", format!("{size}\n"));
        }
        if checkpoint.size == 0 && checkpoint.root != merkle::EMPTY_ROOT {
            return text(422, "size 0 with a non-empty root\n");
        }
        if old == 0 && !proof.is_empty() {
            return text(422, "a proof from size 0\n");
        }
        if old == checkpoint.size {
            if old != 0 && root != checkpoint.root {
                return text(422, "same size, different root\n");
            }
        } else if old != 0
            && merkle::verify_consistency(old, checkpoint.size, &proof, &root, &checkpoint.root)
                .is_err()
        {
            return text(422, "consistency proof does not verify\n");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
            .max(1);
        let line = match self.signer.cosign(&note.text, now) {
            Ok(signature) => signature.to_line(),
            Err(error) => return text(500, format!("cosigning: {error}\n")),
        };
        *latest = (checkpoint.size, checkpoint.root);
        let mut body = line.repeat(self.copies.max(1));
        if self.copies > 1 {
            body.push_str("this is not a signature line\n");
            match self.stranger.cosign(&note.text, now) {
                Ok(signature) => body.push_str(&signature.to_line()),
                Err(error) => return text(500, format!("cosigning: {error}\n")),
            }
        }
        (200, "text/plain; charset=utf-8", body)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        _ => "Internal Server Error",
    }
}

/// Reads one request, answers it and closes the connection.
async fn serve_connection(witness: Arc<Witness>, mut stream: TcpStream) -> Result<()> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            bail!("request head too large");
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut content_length = 0usize;
    for header in lines {
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().context("bad content-length")?;
            }
        }
    }
    let mut parts = request_line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let answer = if content_length > MAX_BODY_BYTES {
        text(413, "body too large\n")
    } else {
        let mut body = buffer[head_end + 4..].to_vec();
        while body.len() < content_length {
            let mut chunk = vec![0u8; content_length - body.len()];
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                bail!("connection closed mid-body");
            }
            body.extend_from_slice(&chunk[..read]);
        }
        match (method, path) {
            ("POST", "/add-checkpoint") => match String::from_utf8(body) {
                Ok(body) => witness.add_checkpoint(&body).await,
                Err(_) => text(400, "body is not UTF-8\n"),
            },
            (_, "/add-checkpoint") => text(405, "POST only\n"),
            _ => text(404, "not found\n"),
        }
    };
    let (status, content_type, body) = answer;
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

struct Args {
    listen: SocketAddr,
    key: String,
    log_vkey: String,
    copies: usize,
    claim_size: u64,
}

fn parse_args() -> Result<Args> {
    let mut listen = None;
    let mut key = None;
    let mut log_vkey = None;
    let mut copies = 1;
    let mut claim_size = 0;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().context("--listen")?),
            "--key" => {
                key = Some(match value.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("reading {path}"))?
                        .trim()
                        .to_owned(),
                    None => value,
                })
            }
            "--log-vkey" => log_vkey = Some(value),
            "--copies" => copies = value.parse().context("--copies")?,
            "--claim-size" => claim_size = value.parse().context("--claim-size")?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(Args {
        listen: listen.context("--listen is required")?,
        key: key.context("--key is required")?,
        log_vkey: log_vkey.context("--log-vkey is required")?,
        copies,
        claim_size,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let signer = CosignatureSigner::from_note_key(&args.key).context("--key")?;
    let log_verifier = Ed25519NoteVerifier::from_vkey(&args.log_vkey).context("--log-vkey")?;
    let origin = args
        .log_vkey
        .split('+')
        .next()
        .unwrap_or_default()
        .to_owned();
    let witness = Arc::new(Witness {
        origin,
        log_verifier,
        signer,
        latest: Mutex::new(match args.claim_size {
            0 => (0, merkle::EMPTY_ROOT),
            size => (size, [0x11; 32]),
        }),
        copies: args.copies,
        stranger: CosignatureSigner::from_note_key(
            &Ed25519NoteSigner::generate("stranger.example")?.to_note_key(),
        )?,
    });
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!(
        "test-witness listening on {} as {}",
        args.listen,
        witness.signer.verifier_key()
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let witness = witness.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_connection(witness, stream).await {
                eprintln!("test-witness: {error:#}");
            }
        });
    }
}
