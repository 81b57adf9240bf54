//! Rollback and fork evidence from witnesses (DESIGN.md, Security: "a witness that has seen a
//! larger tree of this origin is an alarm, not a retry").
//!
//! Two answers are claims against the log:
//! - a `409` whose size is larger than the checkpoint we sent: the witness has cosigned a larger
//!   tree of our origin;
//! - a `422`: the witness holds a root that our tree contradicts (the consistency proof from its
//!   size does not verify, or the same size has another root).
//!
//! A larger size alone is not evidence. A new leader whose integration lags may sign a smaller
//! size than its predecessor published, and a leader may have had a checkpoint cosigned and then
//! lost leadership before committing it. Both sizes are within what Raft committed, though: a
//! leader only ever signs leaves that are committed. So a larger-tree claim is evidence only if
//! the size exceeds the leaves this log has committed, read after confirming leadership (every
//! committed entry is then applied here). Past that, some signer of our origin has published
//! leaves this log does not have: this log was restored from an old state, or another log signs
//! with our key.
//!
//! Evidence stops publication only when the witnesses giving it satisfy the policy's quorum, the
//! same rule that decides whether cosignatures suffice; a lone misbehaving witness cannot stop
//! the log. A policy whose quorum is `none` trusts no witness, so its evidence never halts.

use std::collections::BTreeSet;

use super::policy::WitnessPolicy;

/// What a witness's answer claims about our log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// It has cosigned a tree of our origin of this size, larger than our checkpoint.
    LargerTree { size: u64 },
    /// Our tree is inconsistent with the tree it has cosigned (`422`).
    Inconsistent,
}

impl Claim {
    /// The metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Claim::LargerTree { .. } => "larger_tree",
            Claim::Inconsistent => "inconsistent",
        }
    }
}

/// Whether `claim` is evidence against a log that has committed `committed` leaves (`None`:
/// unknown, because leadership could not be confirmed).
pub fn is_evidence(claim: Claim, committed: Option<u64>) -> bool {
    match claim {
        Claim::LargerTree { size } => committed.is_some_and(|committed| size > committed),
        Claim::Inconsistent => true,
    }
}

/// Whether the witnesses at `witnesses` (indices into the policy) giving evidence are enough to
/// stop publication.
pub fn reaches_quorum(policy: &WitnessPolicy, witnesses: &BTreeSet<usize>) -> bool {
    !witnesses.is_empty()
        && policy.is_satisfied(witnesses)
        && !policy.is_satisfied(&BTreeSet::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    const W1: &str = "sigsum.org+e4ade967+AZuUY6B08pW3QVHu8uvsrxWPcAv9nykap2Nb4oxCee+r";
    const W2: &str = "example.com+3753d3de+AebBhMcghIUoavZpjuDofa4sW6fYHyVn7gvwDBfvkvuM";

    #[test]
    fn a_larger_tree_is_evidence_only_beyond_the_committed_leaves() {
        let claim = Claim::LargerTree { size: 100 };
        assert!(is_evidence(claim, Some(99)));
        // A lagging leader, or a cosigned but uncommitted checkpoint: within the log.
        assert!(!is_evidence(claim, Some(100)));
        assert!(!is_evidence(claim, Some(150)));
        // Not a confirmed leader: nothing to compare with.
        assert!(!is_evidence(claim, None));
        assert!(is_evidence(Claim::Inconsistent, None));
    }

    #[test]
    fn evidence_halts_at_the_quorum_only() {
        let policy = WitnessPolicy::parse(&format!(
            "witness a {W1} http://a\nwitness b {W2} http://b\ngroup g 2 a b\nquorum g\n"
        ))
        .unwrap();
        assert!(!reaches_quorum(&policy, &BTreeSet::new()));
        assert!(!reaches_quorum(&policy, &BTreeSet::from([0])));
        assert!(reaches_quorum(&policy, &BTreeSet::from([0, 1])));

        let any = WitnessPolicy::parse(&format!(
            "witness a {W1} http://a\nwitness b {W2} http://b\ngroup g any a b\nquorum g\n"
        ))
        .unwrap();
        assert!(reaches_quorum(&any, &BTreeSet::from([1])));
    }

    #[test]
    fn a_policy_that_trusts_no_witness_never_halts() {
        let policy =
            WitnessPolicy::parse(&format!("witness a {W1} http://a\nquorum none\n")).unwrap();
        assert!(!reaches_quorum(&policy, &BTreeSet::from([0])));
    }
}
