//! The witness policy file: which witnesses the log asks to cosign its checkpoints, and which
//! subsets of them make a quorum (rekor-v2-api.md §9, tlog-tiles.md §10 "Policy").
//!
//! The format is the Sigsum policy format as Tessera reads it, one statement per line:
//!
//! ```text
//! # comment
//! log <key> [<url>]                       (ignored: the log is us)
//! witness <name> <vkey> <url>
//! group <name> <N|any|all> <member>...
//! quorum <name>
//! ```
//!
//! Witness keys are C2SP signed-note verifier keys of type 0x04 (`cosignature/v1`) or 0x01 (an
//! Ed25519 key used as a cosigner key); both verify `cosignature/v1` lines. Names (witnesses and
//! groups share one namespace) must be defined before they are used, so the quorum is a tree and
//! evaluation needs no cycle check. `none` is the predefined empty quorum (always satisfied).

use std::collections::{BTreeSet, HashMap};

use rekor_storage::cosignature::CosignatureVerifier;
use rekor_storage::note::MAX_SIGNATURES;

/// Why a policy file was rejected. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("line {line}: unknown statement {keyword:?} (expected log, witness, group or quorum)")]
    UnknownStatement { line: usize, keyword: String },
    #[error("line {line}: {statement} needs {expected}")]
    WrongArguments {
        line: usize,
        statement: &'static str,
        expected: &'static str,
    },
    #[error("line {line}: {name:?} is a reserved word and cannot name a witness or group")]
    ReservedName { line: usize, name: String },
    #[error("line {line}: {name:?} is already defined")]
    DuplicateName { line: usize, name: String },
    #[error("line {line}: witness {name:?} has an invalid key: {reason}")]
    InvalidKey {
        line: usize,
        name: String,
        reason: String,
    },
    #[error("line {line}: witness {name:?} has an invalid URL {url:?} (need http:// or https://)")]
    InvalidUrl {
        line: usize,
        name: String,
        url: String,
    },
    #[error("line {line}: group {name:?} has an invalid threshold {threshold:?} (need 1..={members}, any or all)")]
    InvalidThreshold {
        line: usize,
        name: String,
        threshold: String,
        members: usize,
    },
    #[error("line {line}: {name:?} is not defined before this line")]
    UnknownName { line: usize, name: String },
    #[error("line {line}: group {group:?} lists {member:?} twice")]
    DuplicateMember {
        line: usize,
        group: String,
        member: String,
    },
    #[error("line {line}: the quorum is already defined")]
    DuplicateQuorum { line: usize },
    #[error("the policy file must define a quorum")]
    NoQuorum,
    #[error("line {line}: more than {MAX_WITNESSES} witnesses (a checkpoint holds the log's signature and one cosignature per witness, at most {MAX_SIGNATURES} lines)")]
    TooManyWitnesses { line: usize },
}

/// Witnesses a policy may name: each adds at most one signature line to a checkpoint, after the
/// log's own.
pub const MAX_WITNESSES: usize = MAX_SIGNATURES - 1;

/// One witness of the policy.
#[derive(Debug, Clone)]
pub struct PolicyWitness {
    /// The name the policy file gives it (only meaningful inside the file).
    pub name: String,
    /// Its verifier key as written in the file.
    pub vkey: String,
    /// Verifies its `cosignature/v1` lines.
    pub verifier: CosignatureVerifier,
    /// Its submission prefix; requests go to `<url>/add-checkpoint`.
    pub url: String,
}

#[derive(Debug, Clone)]
enum Component {
    /// Index into `WitnessPolicy::witnesses`.
    Witness(usize),
    /// At least `threshold` of the member components (indices into `components`).
    Group {
        threshold: usize,
        members: Vec<usize>,
    },
    /// The predefined `none`: satisfied by nothing at all.
    Nothing,
}

/// A parsed policy: the witnesses to ask, and the quorum rule over them.
#[derive(Debug, Clone)]
pub struct WitnessPolicy {
    witnesses: Vec<PolicyWitness>,
    components: Vec<Component>,
    quorum: usize,
}

/// `none` is predefined; `any` and `all` would read as thresholds in a group line.
const RESERVED: [&str; 3] = ["none", "any", "all"];

impl WitnessPolicy {
    /// Parses a policy file's text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut witnesses = Vec::new();
        let mut components = vec![Component::Nothing];
        let mut names: HashMap<String, usize> = HashMap::from([("none".to_owned(), 0)]);
        let mut quorum = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split_once('#').map_or(raw, |(before, _)| before);
            let fields: Vec<&str> = content.split_whitespace().collect();
            let Some((&keyword, args)) = fields.split_first() else {
                continue;
            };
            let define = |name: &str, names: &HashMap<String, usize>| {
                if RESERVED.contains(&name) {
                    Err(PolicyError::ReservedName {
                        line,
                        name: name.to_owned(),
                    })
                } else if names.contains_key(name) {
                    Err(PolicyError::DuplicateName {
                        line,
                        name: name.to_owned(),
                    })
                } else {
                    Ok(name.to_owned())
                }
            };
            match keyword {
                "log" => {}
                "witness" => {
                    let [name, vkey, url] = args else {
                        return Err(PolicyError::WrongArguments {
                            line,
                            statement: "witness",
                            expected: "<name> <vkey> <url>",
                        });
                    };
                    if witnesses.len() == MAX_WITNESSES {
                        return Err(PolicyError::TooManyWitnesses { line });
                    }
                    let name = define(name, &names)?;
                    let verifier = CosignatureVerifier::from_vkey(vkey).map_err(|error| {
                        PolicyError::InvalidKey {
                            line,
                            name: name.clone(),
                            reason: error.to_string(),
                        }
                    })?;
                    let parsed_url = reqwest::Url::parse(url).ok();
                    if !parsed_url.is_some_and(|u| {
                        matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
                    }) {
                        return Err(PolicyError::InvalidUrl {
                            line,
                            name,
                            url: (*url).to_owned(),
                        });
                    }
                    components.push(Component::Witness(witnesses.len()));
                    names.insert(name.clone(), components.len() - 1);
                    witnesses.push(PolicyWitness {
                        name,
                        vkey: (*vkey).to_owned(),
                        verifier,
                        url: (*url).to_owned(),
                    });
                }
                "group" => {
                    let [name, threshold, members @ ..] = args else {
                        return Err(PolicyError::WrongArguments {
                            line,
                            statement: "group",
                            expected: "<name> <N|any|all> <member>...",
                        });
                    };
                    if members.is_empty() {
                        return Err(PolicyError::WrongArguments {
                            line,
                            statement: "group",
                            expected: "<name> <N|any|all> <member>...",
                        });
                    }
                    let name = define(name, &names)?;
                    let mut member_ids = Vec::with_capacity(members.len());
                    let mut seen = BTreeSet::new();
                    for member in members.iter() {
                        let id = *names.get(*member).ok_or_else(|| PolicyError::UnknownName {
                            line,
                            name: (*member).to_owned(),
                        })?;
                        if !seen.insert(id) {
                            return Err(PolicyError::DuplicateMember {
                                line,
                                group: name,
                                member: (*member).to_owned(),
                            });
                        }
                        member_ids.push(id);
                    }
                    let threshold = match *threshold {
                        "any" => 1,
                        "all" => member_ids.len(),
                        digits => digits
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (1..=member_ids.len()).contains(n))
                            .ok_or_else(|| PolicyError::InvalidThreshold {
                                line,
                                name: name.clone(),
                                threshold: digits.to_owned(),
                                members: member_ids.len(),
                            })?,
                    };
                    components.push(Component::Group {
                        threshold,
                        members: member_ids,
                    });
                    names.insert(name, components.len() - 1);
                }
                "quorum" => {
                    let [name] = args else {
                        return Err(PolicyError::WrongArguments {
                            line,
                            statement: "quorum",
                            expected: "exactly one <name>",
                        });
                    };
                    if quorum.is_some() {
                        return Err(PolicyError::DuplicateQuorum { line });
                    }
                    let id = *names.get(*name).ok_or_else(|| PolicyError::UnknownName {
                        line,
                        name: (*name).to_owned(),
                    })?;
                    quorum = Some(id);
                }
                other => {
                    return Err(PolicyError::UnknownStatement {
                        line,
                        keyword: other.to_owned(),
                    })
                }
            }
        }
        Ok(Self {
            witnesses,
            components,
            quorum: quorum.ok_or(PolicyError::NoQuorum)?,
        })
    }

    /// Every witness defined in the file (whether or not the quorum mentions it), in file order.
    /// Refuses a witness at a plain `http://` URL unless `allow_http`: its answers could be
    /// read and withheld by anyone on the path (cosignatures are verified either way).
    pub fn require_https(&self, allow_http: bool) -> Result<(), String> {
        match self
            .witnesses()
            .iter()
            .find(|w| w.url.starts_with("http://"))
        {
            Some(plain) if !allow_http => Err(format!(
                "witness {:?} is at a plain http:// URL ({}); witnesses are reached over https. \
                 Pass --witness-allow-http for a witness on loopback or a trusted network",
                plain.name, plain.url
            )),
            _ => Ok(()),
        }
    }

    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Whether the witnesses at these indices (into [`Self::witnesses`]) satisfy the quorum.
    pub fn is_satisfied(&self, cosigned: &BTreeSet<usize>) -> bool {
        self.component_satisfied(self.quorum, cosigned)
    }

    fn component_satisfied(&self, id: usize, cosigned: &BTreeSet<usize>) -> bool {
        match self.components.get(id) {
            Some(Component::Nothing) => true,
            Some(Component::Witness(witness)) => cosigned.contains(witness),
            Some(Component::Group { threshold, members }) => {
                members
                    .iter()
                    .filter(|member| self.component_satisfied(**member, cosigned))
                    .count()
                    >= *threshold
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upstream e2e policy (`testdata/rekor-tiles/witness/`, see its README).
    const UPSTREAM_POLICY: &str = include_str!("../../../testdata/rekor-tiles/witness/policy.yaml");
    const W1: &str = "sigsum.org+e4ade967+AZuUY6B08pW3QVHu8uvsrxWPcAv9nykap2Nb4oxCee+r";
    const W2: &str = "example.com+3753d3de+AebBhMcghIUoavZpjuDofa4sW6fYHyVn7gvwDBfvkvuM";

    fn set(items: &[usize]) -> BTreeSet<usize> {
        items.iter().copied().collect()
    }

    #[test]
    fn parses_the_upstream_e2e_policy() {
        let policy = WitnessPolicy::parse(UPSTREAM_POLICY).unwrap();
        assert_eq!(policy.witnesses().len(), 1);
        let witness = &policy.witnesses()[0];
        assert_eq!(witness.name, "o1");
        assert_eq!(witness.url, "http://witness:8100");
        assert_eq!(
            witness.vkey,
            "rekor-witness-test+a478f5cd+AUtKAvrTeY7srtAMfP5JCUOkZoU+A7F5VA094y5LGr89"
        );
        assert!(!policy.is_satisfied(&set(&[])));
        assert!(policy.is_satisfied(&set(&[0])));
        // Its witness is at http://: refused unless plain HTTP is allowed.
        let refusal = policy.require_https(false).unwrap_err();
        assert!(refusal.contains("--witness-allow-http"), "{refusal}");
        assert_eq!(policy.require_https(true), Ok(()));
        let https = UPSTREAM_POLICY.replace("http://witness:8100", "https://witness:8100");
        let policy = WitnessPolicy::parse(&https).unwrap();
        assert_eq!(policy.require_https(false), Ok(()));
    }

    #[test]
    fn comments_whitespace_log_lines_and_groups() {
        let text = format!(
            "\n# comment\nlog {W1} https://log.example\n  witness   w1   {W1}   https://a.example/w/  #c\n\
             \twitness w2 {W2} http://b.example:8080\nwitness w3 {W2} http://c.example\n\
             group two 2 w1 w2 w3\ngroup either any w1 w2\ngroup both all two either\nquorum both\n"
        );
        let policy = WitnessPolicy::parse(&text).unwrap();
        assert_eq!(policy.witnesses().len(), 3);
        assert!(!policy.is_satisfied(&set(&[0])));
        assert!(policy.is_satisfied(&set(&[0, 1])));
        assert!(policy.is_satisfied(&set(&[1, 2])));
        assert!(!policy.is_satisfied(&set(&[2])));
    }

    #[test]
    fn quorum_none_is_always_met() {
        let policy =
            WitnessPolicy::parse(&format!("witness w1 {W1} https://a.example\nquorum none\n"))
                .unwrap();
        assert!(policy.is_satisfied(&set(&[])));
    }

    #[test]
    fn at_most_one_witness_per_remaining_signature_line() {
        let lines = |count: usize| -> String {
            let mut text: String = (0..count)
                .map(|i| format!("witness w{i} {W1} http://w{i}.example\n"))
                .collect();
            text.push_str("quorum w0\n");
            text
        };
        let policy = WitnessPolicy::parse(&lines(MAX_WITNESSES)).unwrap();
        assert_eq!(policy.witnesses().len(), MAX_SIGNATURES - 1);
        assert_eq!(
            WitnessPolicy::parse(&lines(MAX_WITNESSES + 1)).unwrap_err(),
            PolicyError::TooManyWitnesses {
                line: MAX_WITNESSES + 1
            }
        );
    }

    #[test]
    fn cosignature_v1_keys_are_accepted() {
        let signer = rekor_storage::cosignature::CosignatureSigner::new(
            "w.example",
            ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        )
        .unwrap();
        let vkey = signer.verifier_key();
        let policy =
            WitnessPolicy::parse(&format!("witness w {vkey} https://w.example\nquorum w\n"))
                .unwrap();
        assert_eq!(policy.witnesses()[0].vkey, vkey);
    }

    #[test]
    fn each_malformed_line_is_rejected_with_its_line_number() {
        let head =
            format!("witness w1 {W1} https://a.example\nwitness w2 {W2} https://b.example\n");
        type Expectation = fn(&PolicyError) -> bool;
        let cases: Vec<(String, Expectation)> = vec![
            (format!("{head}frobnicate x\nquorum w1"), |e| {
                matches!(e, PolicyError::UnknownStatement { line: 3, .. })
            }),
            (format!("{head}witness w3 {W1}\nquorum w1"), |e| {
                matches!(e, PolicyError::WrongArguments { line: 3, .. })
            }),
            (
                format!("{head}witness w3 {W1} https://x extra\nquorum w1"),
                |e| matches!(e, PolicyError::WrongArguments { line: 3, .. }),
            ),
            (
                format!("{head}witness all {W1} https://x.example\nquorum w1"),
                |e| matches!(e, PolicyError::ReservedName { line: 3, .. }),
            ),
            (format!("{head}group none 1 w1\nquorum w1"), |e| {
                matches!(e, PolicyError::ReservedName { line: 3, .. })
            }),
            (
                format!("{head}witness w1 {W1} https://x.example\nquorum w1"),
                |e| matches!(e, PolicyError::DuplicateName { line: 3, .. }),
            ),
            (
                format!("{head}witness w3 not-a-key https://x.example\nquorum w1"),
                |e| matches!(e, PolicyError::InvalidKey { line: 3, .. }),
            ),
            // A P-256 style vkey (type 0x02) cannot make cosignature/v1 lines.
            (
                format!("{head}witness w3 x.example+00000000+AgAA https://x.example\nquorum w1"),
                |e| matches!(e, PolicyError::InvalidKey { line: 3, .. }),
            ),
            (
                format!("{head}witness w3 {W1} ftp://x.example\nquorum w1"),
                |e| matches!(e, PolicyError::InvalidUrl { line: 3, .. }),
            ),
            (format!("{head}witness w3 {W1} x.example\nquorum w1"), |e| {
                matches!(e, PolicyError::InvalidUrl { line: 3, .. })
            }),
            (format!("{head}group g -1 w1\nquorum g"), |e| {
                matches!(e, PolicyError::InvalidThreshold { line: 3, .. })
            }),
            (format!("{head}group g 0 w1\nquorum g"), |e| {
                matches!(e, PolicyError::InvalidThreshold { line: 3, .. })
            }),
            (format!("{head}group g 3 w1 w2\nquorum g"), |e| {
                matches!(e, PolicyError::InvalidThreshold { line: 3, .. })
            }),
            (format!("{head}group g some w1 w2\nquorum g"), |e| {
                matches!(e, PolicyError::InvalidThreshold { line: 3, .. })
            }),
            (format!("{head}group g any\nquorum g"), |e| {
                matches!(e, PolicyError::WrongArguments { line: 3, .. })
            }),
            (format!("{head}group g any w1 w9\nquorum g"), |e| {
                matches!(e, PolicyError::UnknownName { line: 3, .. })
            }),
            (format!("{head}group g any w1 w1\nquorum g"), |e| {
                matches!(e, PolicyError::DuplicateMember { line: 3, .. })
            }),
            (format!("{head}quorum w9"), |e| {
                matches!(e, PolicyError::UnknownName { line: 3, .. })
            }),
            (format!("{head}quorum"), |e| {
                matches!(e, PolicyError::WrongArguments { line: 3, .. })
            }),
            (format!("{head}quorum w1 w2"), |e| {
                matches!(e, PolicyError::WrongArguments { line: 3, .. })
            }),
            (format!("{head}quorum w1\nquorum w2"), |e| {
                matches!(e, PolicyError::DuplicateQuorum { line: 4 })
            }),
            // A group may only use names defined above it.
            (
                format!("{head}group g any w1 w3\nwitness w3 {W1} https://x.example\nquorum g"),
                |e| matches!(e, PolicyError::UnknownName { line: 3, .. }),
            ),
            (head.clone(), |e| matches!(e, PolicyError::NoQuorum)),
        ];
        for (text, expected) in cases {
            match WitnessPolicy::parse(&text) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(error) => assert!(expected(&error), "wrong error {error:?} for:\n{text}"),
            }
        }
    }
}
