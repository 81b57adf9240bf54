//! The publication halt: once witnesses at the policy's quorum have given evidence that this log
//! was rolled back or forked (see [`super::evidence`]), the leader stops publishing checkpoints
//! until an operator acts (docs/operations.md, "Witnessing"). Publishing on would sign a tree
//! that contradicts what the witnesses already vouched for; stopping keeps the evidence intact.
//!
//! The halt lives in memory on the node that detected it, and is not replicated: the evidence is
//! the witnesses' state, so any other leader (or this node after a restart) that asks them meets
//! it again at its first checkpoint. It shows as the gauge `rekor_publication_halted` and in
//! `/status.json`.

use std::sync::{Arc, Mutex};

use prometheus::{IntGauge, Registry};

/// Shared halt state: cheap to clone, one per node.
#[derive(Clone)]
pub struct PublicationHalt {
    inner: Arc<Inner>,
}

struct Inner {
    reason: Mutex<Option<String>>,
    gauge: IntGauge,
}

impl PublicationHalt {
    /// Not halted; registers the gauge on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = IntGauge::new(
            "rekor_publication_halted",
            "1 while this node refuses to publish checkpoints because witnesses at the policy's \
             quorum gave evidence of a rollback or fork of this log",
        )?;
        registry.register(Box::new(gauge.clone()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                reason: Mutex::new(None),
                gauge,
            }),
        })
    }

    /// Stops publication for `reason`; the first reason is kept.
    pub fn halt(&self, reason: String) {
        let mut current = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner());
        current.get_or_insert(reason);
        self.inner.gauge.set(1);
    }

    /// Why publication is halted, if it is.
    pub fn reason(&self) -> Option<String> {
        self.inner
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halting_sets_the_gauge_and_keeps_the_first_reason() {
        let registry = Registry::new();
        let halt = PublicationHalt::register(&registry).unwrap();
        assert_eq!(halt.reason(), None);
        assert_eq!(halt.inner.gauge.get(), 0);
        halt.halt("first".into());
        halt.clone().halt("second".into());
        assert_eq!(halt.reason().as_deref(), Some("first"));
        assert_eq!(halt.inner.gauge.get(), 1);
    }
}
