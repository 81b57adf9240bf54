#!/usr/bin/env python3
"""Where a write run's CPU went, from `perf script -F comm,pid,tid,ip,sym` with call graphs.

Used by scripts/profile-writes.sh; the profiles in docs/benchmarks.md's analysis are read this
way. Every figure is a share of all samples, i.e. of the whole machine over the sampled seconds
(idle included, as `swapper`).

Three views:
  - by process: each rekor-node process (the one replicating is the leader),
    the benchmark process (load generator) and the rest (kernel threads, anything else);
  - by thread group, inside the nodes: the stages of the benchmark's "CPU per entry by stage"
    table (cluster-tests/src/load/thread_cpu.rs names them), each split into user and kernel;
  - by stage of the write path: samples are put in the first category whose frame pattern
    appears anywhere in their stack, so the order within CATEGORIES matters (most specific first).

The patterns are function paths of this repository and of the crates it calls; a rename that
breaks one moves its samples to "other" in its group, which the output shows.

Standard library only.
"""

import argparse
import collections
import re
import sys

VERIFICATION = "verification pool"
HTTP = "HTTP workers and actors"
TOKIO = "tokio runtime (Raft, forwarding, file IO)"

# Thread-name prefixes of the node's stages, as in cluster-tests/src/load/thread_cpu.rs (keep the
# two in step).
STAGES = [
    (VERIFICATION, ("rekor-verify",)),
    (HTTP, ("actix-rt", "actix-server")),
    (TOKIO, ("rekor-worker", "tokio-runtime", "tokio-rt-")),
    ("Raft log writer", ("raft-log-writer",)),
    ("sled", ("sled-", "log flusher")),
]

# Per stage, (category, frame substrings): a sample of that stage counts for the first category
# one of whose substrings is in one of its frames.
CATEGORIES = {
    VERIFICATION: [
        ("signature check (aws-lc)", ("AwsLcVerifier as rekor_api::verifier::EntryVerifier>::verify",)),
        ("key and certificate parsing", ("EntryValidator::check_verifier",)),
        ("request JSON decoding", ("CreateEntryRequest::from_json",)),
        ("canonical body", ("canonical::hashedrekord_body", "canonical::dsse_body")),
        ("leaf and identity hashes", ("rekor_api::entry::finish",)),
    ],
    HTTP: [
        ("forwarded batches (leader)", ("internal::sequence_batch",)),
        ("Raft RPCs received", ("rekor_raft::server::",)),
        ("inclusion proof", ("inclusion_proof_from_store",)),
        ("proof self-check", ("submission::check_proof",)),
        ("response JSON", ("Submitted::to_json",)),
        ("submission (sequence, wait)", ("submission::<impl rekor_api::http::ApiState>::submit",)),
        ("integration step", ("rekor_node::integrator::Integrator",)),
        ("socket reads and writes", ("DeadlineStream<S> as tokio::io::async_write", "DeadlineStream<S> as tokio::io::async_read")),
        ("other request handling", ("rekor_api::http::", "rekor_api::limits::guard_body")),
    ],
    TOKIO: [
        ("tile files (object_store)", ("object_store::local::LocalFileSystem",)),
        ("state machine: identity index", ("EntryFiles::claim",)),
        ("state machine: leaf bodies", ("EntryFiles::append",)),
        ("state machine: leaf and identity hashes", ("rekor_raft::types::identity_of", "rekor_storage::merkle::leaf_hash")),
        ("state machine: other", ("RaftStateMachine<rekor_raft",)),
        ("Raft log reads", ("LogReader::",)),
        ("replication (leader)", ("openraft::replication::",)),
        ("forwarding (follower)", ("rekor_node::forwarder::",)),
        ("Raft core", ("openraft::core::",)),
    ],
}

# Only a leader replicates.
LEADER_MARK = "openraft::replication::ReplicationCore"
OTHER_NODE_THREADS = "other node threads (actors' system, signals, ...)"
KERNEL = re.compile(r"^ffffffff")
# Thread names only a node has (tokio's default names are shared with the load generator).
NODE_THREADS = ("rekor-", "raft-log-writer")


def stage_of(comm):
    for stage, prefixes in STAGES:
        if comm.startswith(prefixes):
            return stage
    return "other threads"


def samples(path):
    """Yields (comm, pid, frames) with frames leaf first, each (address, symbol)."""
    head, frames = None, []
    with open(path, errors="replace") as text:
        for line in text:
            line = line.rstrip("\n")
            if not line:
                if head:
                    yield head[0], head[1], frames
                head, frames = None, []
            elif line[0] in " \t":
                parts = line.split(None, 1)
                frames.append((parts[0], parts[1] if len(parts) > 1 else "?"))
            else:
                comm, _, ids = line.rstrip().rpartition(" ")
                head = (comm.strip(), ids.split("/")[0])
    if head:
        yield head[0], head[1], frames


def category_of(stage, frames):
    for name, patterns in CATEGORIES.get(stage, []):
        if any(pattern in symbol for _, symbol in frames for pattern in patterns):
            return name
    return "other"


def percent(count, total):
    return 100.0 * count / total if total else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("perf_script", help="output of perf script -F comm,pid,tid,ip,sym")
    parser.add_argument("--load-generator-pid", help="pid of the benchmark process")
    args = parser.parse_args()

    node_pids = set()
    leader_pids = set()
    # (pid, comm, stage, in the kernel, category) per sample: which processes are nodes is known
    # only once all samples are read (a node is known by its thread names).
    rows = []
    for comm, pid, frames in samples(args.perf_script):
        stage = stage_of(comm)
        if comm.startswith(NODE_THREADS):
            node_pids.add(pid)
        if any(LEADER_MARK in symbol for _, symbol in frames):
            leader_pids.add(pid)
        in_kernel = bool(frames) and bool(KERNEL.match(frames[0][0]))
        rows.append((pid, comm, stage, in_kernel, category_of(stage, frames)))
    total = len(rows)
    if total == 0:
        sys.exit("perf_breakdown: no samples in " + args.perf_script)

    by_process = collections.Counter()
    by_stage = collections.Counter()
    kernel_by_stage = collections.Counter()
    by_category = collections.Counter()
    for pid, comm, stage, in_kernel, category in rows:
        if pid in node_pids:
            label = f"node (pid {pid}{', leader' if pid in leader_pids else ''})"
            if stage == "other threads":
                stage = OTHER_NODE_THREADS
            by_stage[stage] += 1
            kernel_by_stage[stage] += in_kernel
            by_category[(stage, category)] += 1
        elif pid == args.load_generator_pid:
            label = "load generator (bench)"
        elif comm == "swapper":
            label = "idle"
        else:
            label = "kernel threads and other processes"
        by_process[label] += 1

    print(f"{total} samples; shares of the whole machine over the sampled seconds")
    print("\nby process")
    for label, count in by_process.most_common():
        print(f"  {percent(count, total):6.2f}%  {label}")
    print("\nby thread group, all nodes (kernel part in brackets)")
    stages = [stage for stage, _ in STAGES] + [OTHER_NODE_THREADS]
    for stage in stages:
        print(f"  {percent(by_stage[stage], total):6.2f}%  {stage} ({percent(kernel_by_stage[stage], total):.2f}% kernel)")
    print("\nby stage of the write path, all nodes")
    for stage in stages:
        counts = [(c, n) for (s, c), n in by_category.items() if s == stage]
        if not counts:
            continue
        print(f"  {stage}")
        for category, count in sorted(counts, key=lambda row: -row[1]):
            print(f"    {percent(count, total):6.2f}%  {category}")


if __name__ == "__main__":
    main()
