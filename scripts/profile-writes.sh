#!/usr/bin/env bash
# Profiles the write path: runs the benchmark's write scenario (1 or 3 nodes), samples every CPU
# with `perf record` while it runs, and prints where the machine's time went, by process, by thread
# group and by stage (scripts/perf_breakdown.py). This is how the profiles quoted in
# docs/benchmarks.md's analysis are taken.
#
#   scripts/profile-writes.sh [--nodes 1|3] [--shared] [--out DIR] [--seconds N] [--duration N]
#
# Needs `perf` (linux-tools), permission to sample system-wide (root, or
# kernel.perf_event_paranoid <= -1), and release binaries (it builds them). The machine should be
# otherwise idle: the profile is system-wide, and anything else running is in it.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=1
shared=()
out=""
seconds=8
duration=40
while [ $# -gt 0 ]; do
    case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --shared) shared=(--shared-store-nodes 3); shift ;;
    --out) out="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "profile-writes: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$nodes" in 1 | 3) ;; *) echo "profile-writes: --nodes is 1 or 3" >&2; exit 2 ;; esac
if [ ${#shared[@]} -gt 0 ] && [ "$nodes" != 3 ]; then
    echo "profile-writes: --shared needs --nodes 3" >&2
    exit 2
fi
if [ "$seconds" -ge "$duration" ]; then
    echo "profile-writes: --seconds must be shorter than --duration" >&2
    exit 2
fi
command -v perf > /dev/null || { echo "profile-writes: perf is not installed" >&2; exit 1; }
out="${out:-$(mktemp -d "${TMPDIR:-/tmp}/rekor-profile.XXXXXX")}"
mkdir -p "$out"

cargo build --release -p rekor-node -p rekor-cluster-tests
# The shared-store scenario runs after the per-node one; only it is sampled then.
started="write scenario"
if [ ${#shared[@]} -gt 0 ]; then
    started="on one shared tile store"
fi
echo "profile-writes: benchmark running, report in $out/bench.md"
target/release/bench --nodes "$nodes" "${shared[@]}" --duration "$duration" --no-reads \
    --no-growth --no-plain-comparison --remote-signer-delay-ms 0 --ceiling-duration 2 \
    --requests $((duration * 15000)) \
    --markdown "$out/bench.md" > "$out/bench.log" 2>&1 &
bench=$!
trap 'kill "$bench" 2> /dev/null || true' EXIT

# The write scenario's clients start once the bench logs it; give the cluster a few seconds to
# reach its steady state (checkpoints flowing, batches at their size) before sampling.
deadline=$((SECONDS + 900))
until grep -q "$started" "$out/bench.log" 2> /dev/null; do
    if ! kill -0 "$bench" 2> /dev/null; then
        echo "profile-writes: the benchmark stopped before its write scenario; see $out/bench.log" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "profile-writes: no write scenario after 15 minutes; see $out/bench.log" >&2
        exit 1
    fi
    sleep 1
done
warmup=$(((duration - seconds) / 2))
sleep "$warmup"
echo "profile-writes: sampling for ${seconds}s"
perf record -a -F 199 --call-graph dwarf,16384 -o "$out/perf.data" -- sleep "$seconds" \
    > "$out/perf-record.log" 2>&1
echo "profile-writes: waiting for the benchmark to finish"
wait "$bench"
trap - EXIT
echo "profile-writes: decoding the samples (a few minutes)"
perf script -i "$out/perf.data" -F comm,pid,tid,ip,sym > "$out/perf.txt" 2> /dev/null
grep -E '^\| [0-9]+ \|' "$out/bench.md" | head -n 2 || true
python3 scripts/perf_breakdown.py --load-generator-pid "$bench" "$out/perf.txt" | tee "$out/breakdown.txt"
