//! One byte per slot in memory, mirroring what each slot of a shard holds, so that a probe
//! reads the file only for a slot that may hold the identity it looks for.
//!
//! Why: dedup probes the index once on the HTTP path and once more in every node's apply, and
//! each probe was a `pread` into a table far larger than the CPU caches. On the benchmark's
//! machine a `pread` of a few slots cost ~4–5 µs of kernel time (page-cache lookup, `atime`,
//! copy), two or three of them per entry per node. With the tags a new identity (almost every
//! submission) is found absent without reading the file, and a claim of it is the one 40-byte
//! `pwrite` it always was; a duplicate costs one 40-byte `pread` of its own slot.
//!
//! A tag is [`TAG_EMPTY`], [`TAG_TORN`] (a tombstone), [`TAG_UNKNOWN`] (a write failed, so the
//! bytes on disk are not known: read them) or a live slot's tag, taken from identity byte 31
//! (independent of the shard bits in byte 0 and the home-slot bytes 8..16). Live tags collide
//! with probability 1/253, and a collision costs one extra read, never a wrong answer: the slot's
//! bytes decide.
//!
//! The tags are built at open by one sequential read of each shard and kept in step by every
//! write of this process, which is the index's only writer (the directory lock). Memory: one byte
//! per slot, ~2–3 bytes per stored identity at the table's load of 0.35–0.7 (~25 MiB at 10 M).

use super::format::{decode_slot, home_hash, home_slot, SlotState, SLOT};
use super::table::Probe;
use super::Result;

/// The slot is empty (all zero on disk).
const TAG_EMPTY: u8 = 0;
/// The slot fails its check: a tombstone.
const TAG_TORN: u8 = 1;
/// What the slot holds is not known here (a write of it failed): read it.
const TAG_UNKNOWN: u8 = 2;
/// Live tags are `FIRST_LIVE_TAG..=255`.
const FIRST_LIVE_TAG: u8 = 3;

/// The tag of a live slot holding `identity`.
fn live_tag(identity: &[u8; 32]) -> u8 {
    FIRST_LIVE_TAG + identity[31] % (u8::MAX - FIRST_LIVE_TAG + 1)
}

/// The tag of a slot in `state`.
pub(super) fn tag_of(state: &SlotState<'_>) -> u8 {
    match state {
        SlotState::Empty => TAG_EMPTY,
        SlotState::Torn => TAG_TORN,
        SlotState::Live { identity, .. } => live_tag(identity),
    }
}

/// The tags of one shard's slots, in slot order.
pub(super) struct SlotTags(Vec<u8>);

impl SlotTags {
    /// Tags of a table of `slot_count` empty slots.
    pub(super) fn empty(slot_count: u64) -> Self {
        Self(vec![TAG_EMPTY; slot_count as usize])
    }

    pub(super) fn slot_count(&self) -> u64 {
        self.0.len() as u64
    }

    #[cfg(test)]
    pub(super) fn get(&self, slot: u64) -> Option<u8> {
        self.0.get(slot as usize).copied()
    }

    /// Records what was written at `slot`.
    pub(super) fn set_live(&mut self, slot: u64, identity: &[u8; 32]) {
        self.set(slot, live_tag(identity));
    }

    /// Records `tag` for `slot` (from [`tag_of`], or after a write whose outcome is unknown).
    pub(super) fn set(&mut self, slot: u64, tag: u8) {
        if let Some(at) = self.0.get_mut(slot as usize) {
            *at = tag;
        }
    }

    /// After a failed write of `slot`: its bytes on disk are no longer known.
    pub(super) fn forget(&mut self, slot: u64) {
        self.set(slot, TAG_UNKNOWN);
    }

    /// Linear probe for `identity` over the tags, the same walk and the same answer as
    /// [`super::table::probe`] over the file, reading through `read_slot` only the slots whose
    /// tag matches `identity` or is unknown.
    pub(super) fn probe(
        &self,
        identity: &[u8; 32],
        mut read_slot: impl FnMut(u64) -> Result<[u8; SLOT]>,
    ) -> Result<Probe> {
        let slot_count = self.slot_count();
        let wanted = live_tag(identity);
        let mut slot = home_slot(home_hash(identity), slot_count);
        let mut first_tombstone = None;
        for _ in 0..slot_count {
            let tag = self.0[slot as usize];
            let tag = if tag == wanted || tag == TAG_UNKNOWN {
                let bytes = read_slot(slot)?;
                match decode_slot(&bytes) {
                    SlotState::Live {
                        identity: stored,
                        index,
                    } if stored == identity => return Ok(Probe::Found { slot, index }),
                    state => tag_of(&state),
                }
            } else {
                tag
            };
            match tag {
                TAG_EMPTY => {
                    return Ok(Probe::Vacant {
                        slot: first_tombstone.unwrap_or(slot),
                        reuses_tombstone: first_tombstone.is_some(),
                    })
                }
                TAG_TORN => {
                    first_tombstone.get_or_insert(slot);
                }
                _ => {}
            }
            slot = (slot + 1) % slot_count;
        }
        Ok(match first_tombstone {
            Some(slot) => Probe::Vacant {
                slot,
                reuses_tombstone: true,
            },
            None => Probe::Full,
        })
    }
}
