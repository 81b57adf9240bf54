#!/usr/bin/env bash
# A Raft cluster of 3 or 5 rekor-node processes on loopback, for trying the log on one machine.
#
#   scripts/local-cluster.sh start [3|5] [--plain]  start the nodes (and form the cluster on first start)
#   scripts/local-cluster.sh status                 each node: pid, ports, `rekor-node status`
#   scripts/local-cluster.sh logs                   follow every node's log (Ctrl-C to stop following)
#   scripts/local-cluster.sh stop                   SIGTERM every node and wait for it to exit
#   scripts/local-cluster.sh clean                  stop, then delete the cluster's directory
#
# One node at a time (N is 1..3 or 1..5; the fault hooks of `chaos live`, docs/operations.md,
# "Chaos-testing a live deployment"):
#
#   scripts/local-cluster.sh kill N                 SIGKILL node N and wait until it is gone
#   scripts/local-cluster.sh start-node N           start node N again with its flags; waits for /livez
#   scripts/local-cluster.sh stop-node N            SIGTERM node N and wait for it to exit
#   scripts/local-cluster.sh pause N | resume N     SIGSTOP / SIGCONT node N (a stand-in for isolating it)
#   scripts/local-cluster.sh leader                 print the number of the node that leads now
#
# Node i (1-based) serves the public API on 127.0.0.1:(BASE + 10·(i-1)), its node-to-node
# listener on the next port and the read listener (`--read-listen`: checkpoint, tiles, bundles)
# three above: with the default base, node 1 is http://127.0.0.1:3000 (3001, reads 3003),
# node 2 http://127.0.0.1:3010 (3011, 3013), node 3 http://127.0.0.1:3020 (3021, 3023), ...
#
# The node-to-node listeners run mutual TLS: the first start makes a development CA, a
# certificate per node and an operator certificate `admin` with `rekor-node certs` in tls/ of
# the cluster's directory (each start renews them; docs/operations.md, "Transport security").
# `start --plain` on first start makes a cluster without TLS instead; a cluster keeps the
# setting it was formed with. The public API is plain HTTP on loopback either way.
#
# Everything lives under ./local-cluster (one data directory and log per node, the shared
# checkpoint signing key, the cluster secret, the certificates, `keygen.txt` with what clients
# need to trust the log, and `admin.env`, which sets what `rekor-node status`, `node` and
# `freeze` need to reach node 1: `. local-cluster/admin.env && rekor-node status`). `stop` keeps
# it; `start` again resumes the same log.
#
# Environment:
#   REKOR_NODE_BIN      the binary (default: the newer of target/release/rekor-node and
#                       target/debug/rekor-node; build with `cargo build --release -p rekor-node`)
#   REKOR_CLUSTER_DIR   where the cluster lives (default: ./local-cluster)
#   REKOR_BASE_PORT     node 1's public port (default: 3000)
#   REKOR_ORIGIN        the log's origin on first start (default: rekor.local)
set -euo pipefail
cd "$(dirname "$0")/.."

command=${1:-}
dir=${REKOR_CLUSTER_DIR:-./local-cluster}
base_port=${REKOR_BASE_PORT:-3000}
origin=${REKOR_ORIGIN:-rekor.local}

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() { echo "local-cluster: $*" >&2; exit 1; }

find_binary() {
  if [ -n "${REKOR_NODE_BIN:-}" ]; then
    [ -x "$REKOR_NODE_BIN" ] || die "REKOR_NODE_BIN=$REKOR_NODE_BIN is not an executable"
    echo "$REKOR_NODE_BIN"
    return
  fi
  local release=target/release/rekor-node debug=target/debug/rekor-node
  if [ -x "$release" ] && { [ ! -x "$debug" ] || [ "$release" -nt "$debug" ]; }; then
    echo "$release"
  elif [ -x "$debug" ]; then
    echo "$debug"
  else
    die "no rekor-node binary: run 'cargo build --release -p rekor-node' (or set REKOR_NODE_BIN)"
  fi
}

public_port() { echo $((base_port + 10 * ($1 - 1))); }
internal_port() { echo $((base_port + 10 * ($1 - 1) + 1)); }
read_port() { echo $((base_port + 10 * ($1 - 1) + 3)); }

# The node count: the argument on first start, then what the cluster was formed with.
node_count() {
  if [ -f "$dir/nodes" ]; then
    cat "$dir/nodes"
  else
    echo "${1:-3}"
  fi
}

# Whether process $1 runs and is node $2: one reading of its state and command line. Not
# `kill -0` then `ps`: a zombie reaped between the two looks alive (nothing for `ps` to print).
# The command line, because pids wrap around and a pidfile may outlive its process.
node_alive() {
  local line
  line=$(ps -ww -o stat=,args= -p "$1" 2>/dev/null) || return 1
  [ -n "$line" ] && [ "${line:0:1}" != Z ] && [[ "$line" == *" serve --node-id $2 "* ]]
}

# Whether process $1 has exited entirely. After SIGKILL the main thread can be a zombie while
# other threads still run their exit (one in a disk write, say) and hold the node's ports and
# files, so every thread must be a zombie or gone before the node can start again.
exited() {
  local threads
  threads=$(ps -L -o stat= -p "$1" 2>/dev/null) || return 0
  [ -z "$threads" ] || ! grep -qv '^Z' <<<"$threads"
}

running_pid() {
  local pidfile="$dir/node$1.pid"
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  node_alive "$pid" "$1" || return 1
  echo "$pid"
}

# Checks that $1 names a node of the cluster and prints it.
node_number() {
  [ -f "$dir/nodes" ] || die "no cluster in $dir ('$0 start' first)"
  local n
  n=$(node_count)
  if ! [[ "${1:-}" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt "$n" ]; then
    die "give a node number from 1 to $n, not '${1:-}'"
  fi
  echo "$1"
}

# Polls a command until it succeeds, for at most $1 seconds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

# The process serves HTTP (liveness; says nothing of quorum or storage, which /healthz checks).
live() { curl -fsS -m 2 "http://127.0.0.1:$(public_port "$1")/livez"; }

# The cluster's transport, `tls` or `plain`: what it was formed with (a cluster formed before
# this script made certificates is plain), else what this start asks for.
transport() {
  if [ -f "$dir/transport" ]; then
    cat "$dir/transport"
  elif [ -f "$dir/initialized" ]; then
    echo plain
  else
    echo "${1:-tls}"
  fi
}

# Sets `admin_tls`: the operator certificate flags of `rekor-node init`, `status`, `node` and
# `freeze` (none for a plain cluster).
load_transport() {
  admin_tls=()
  if [ "$(transport)" = tls ]; then
    admin_tls=(--tls-ca-file "$dir/tls/ca.pem" --tls-cert-file "$dir/tls/operator-admin.pem"
      --tls-key-file "$dir/tls/operator-admin-key.pem")
  fi
}

admin() {
  "$bin" "$@" --cluster-secret-file "$dir/cluster-secret" ${admin_tls[@]+"${admin_tls[@]}"}
}

has_leader() {
  admin status --target "127.0.0.1:$(internal_port 1)" | grep -Eq '"leader": [0-9]+'
}

# Starts node $1 in the background with the cluster's flags (needs `bin`).
launch_node() {
  local i=$1 node_tls=()
  if [ "$(transport)" = tls ]; then
    node_tls=(--internal-tls-ca-file "$dir/tls/ca.pem" --internal-tls-cert-file "$dir/tls/node-$i.pem"
      --internal-tls-key-file "$dir/tls/node-$i-key.pem")
  fi
  # setsid: the node must not die with this shell (or with a Ctrl-C in it).
  setsid "$bin" serve \
    --node-id "$i" \
    --data-dir "$dir/node$i" \
    --listen "127.0.0.1:$(public_port "$i")" \
    --listen-internal "127.0.0.1:$(internal_port "$i")" \
    --read-listen "127.0.0.1:$(read_port "$i")" \
    --origin "$(cat "$dir/origin")" \
    --signing-key "$dir/signing-key.pem" \
    --cluster-secret-file "$dir/cluster-secret" \
    --bootstrap-single=false \
    ${node_tls[@]+"${node_tls[@]}"} \
    </dev/null >>"$dir/node$i.log" 2>&1 &
  echo $! >"$dir/node$i.pid"
}

start() {
  local requested="" wanted_transport=tls
  for arg in "$@"; do
    case "$arg" in
      --plain) wanted_transport=plain ;;
      3 | 5) requested=$arg ;;
      *) die "the cluster size must be 3 or 5, not $arg" ;;
    esac
  done
  if [ -f "$dir/nodes" ] && [ -n "$requested" ] && [ "$requested" != "$(cat "$dir/nodes")" ]; then
    die "$dir holds a $(cat "$dir/nodes")-node cluster; run '$0 clean' first to start over with $requested"
  fi
  local cluster_transport
  cluster_transport=$(transport "$wanted_transport")
  if [ "$wanted_transport" = plain ] && [ "$cluster_transport" = tls ]; then
    die "$dir holds a cluster with TLS between its nodes; run '$0 clean' first to start over without"
  fi
  local n
  n=$(node_count "$requested")
  bin=$(find_binary)
  mkdir -p "$dir"
  for i in $(seq 1 "$n"); do
    if pid=$(running_pid "$i"); then
      die "node $i is already running (pid $pid); '$0 stop' first"
    fi
  done

  if [ ! -f "$dir/cluster-secret" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/cluster-secret")
  fi
  if [ ! -f "$dir/signing-key.pem" ]; then
    "$bin" keygen --origin "$origin" --out "$dir/signing-key.pem" \
      --base-url "http://127.0.0.1:$(public_port 1)" >"$dir/keygen.txt"
    echo "$origin" >"$dir/origin"
  fi
  echo "$n" >"$dir/nodes"
  echo "$cluster_transport" >"$dir/transport"
  load_transport
  local cluster_origin
  cluster_origin=$(cat "$dir/origin")

  if [ "$cluster_transport" = tls ]; then
    # Reuses the CA made on first start; renews the node and operator certificates.
    "$bin" certs --dir "$dir/tls" --node-ids "$(seq -s, 1 "$n")" --operator admin >/dev/null
  fi
  local abs_dir
  abs_dir=$(cd "$dir" && pwd)
  {
    echo "# . $dir/admin.env && rekor-node status   (node 1; any node's internal port works)"
    echo "export REKOR_TARGET=127.0.0.1:$(internal_port 1)"
    echo "export REKOR_CLUSTER_SECRET_FILE=$abs_dir/cluster-secret"
    if [ "$cluster_transport" = tls ]; then
      echo "export REKOR_ADMIN_TLS_CA_FILE=$abs_dir/tls/ca.pem"
      echo "export REKOR_ADMIN_TLS_CERT_FILE=$abs_dir/tls/operator-admin.pem"
      echo "export REKOR_ADMIN_TLS_KEY_FILE=$abs_dir/tls/operator-admin-key.pem"
    fi
  } >"$dir/admin.env"

  for i in $(seq 1 "$n"); do
    launch_node "$i"
  done
  for i in $(seq 1 "$n"); do
    wait_for 60 "node $i to answer /livez (see $dir/node$i.log)" live "$i"
  done

  if [ ! -f "$dir/initialized" ]; then
    local members=()
    for i in $(seq 1 "$n"); do
      members+=(--member "$i=127.0.0.1:$(internal_port "$i"),127.0.0.1:$(public_port "$i")")
    done
    admin init --target "127.0.0.1:$(internal_port 1)" "${members[@]}" >/dev/null
    touch "$dir/initialized"
  fi
  wait_for 60 "a leader" has_leader

  local between="mutual TLS between nodes, certificates in $dir/tls"
  [ "$cluster_transport" = tls ] || between="no TLS between nodes"
  echo "started $n nodes of $cluster_origin (binary: $bin, data: $dir, $between)"
  for i in $(seq 1 "$n"); do
    echo "  node $i: http://127.0.0.1:$(public_port "$i")  (internal 127.0.0.1:$(internal_port "$i"), reads http://127.0.0.1:$(read_port "$i"), pid $(cat "$dir/node$i.pid"))"
  done
  echo "status page: http://127.0.0.1:$(public_port 1)/    trust: $dir/keygen.txt"
  echo "admin: . $dir/admin.env && $bin status"
}

stop() {
  [ -f "$dir/nodes" ] || { echo "no cluster in $dir"; return; }
  local n pid
  local -A stopping=()
  n=$(node_count)
  for i in $(seq 1 "$n"); do
    if pid=$(running_pid "$i"); then
      kill -TERM "$pid"
      # A paused node must wake up to exit.
      kill -CONT "$pid" 2>/dev/null || true
      stopping[$i]=$pid
    fi
  done
  for i in $(seq 1 "$n"); do
    if [ -n "${stopping[$i]:-}" ]; then
      wait_for 30 "node $i (pid ${stopping[$i]}) to exit" exited "${stopping[$i]}"
      echo "node $i stopped"
    fi
    rm -f "$dir/node$i.pid"
  done
}

kill_node() {
  local i pid
  i=$(node_number "${1:-}")
  pid=$(running_pid "$i") || die "node $i is not running"
  kill -KILL "$pid"
  wait_for 30 "node $i (pid $pid) to be gone" exited "$pid"
  echo "node $i killed (pid $pid)"
}

start_node() {
  local i pid
  i=$(node_number "${1:-}")
  [ -f "$dir/initialized" ] || die "the cluster in $dir was never formed ('$0 start' first)"
  if pid=$(running_pid "$i"); then
    die "node $i is already running (pid $pid)"
  fi
  bin=$(find_binary)
  launch_node "$i"
  wait_for 60 "node $i to answer /livez (see $dir/node$i.log)" live "$i"
  echo "node $i started (pid $(cat "$dir/node$i.pid"))"
}

stop_node() {
  local i pid
  i=$(node_number "${1:-}")
  pid=$(running_pid "$i") || die "node $i is not running"
  kill -TERM "$pid"
  kill -CONT "$pid" 2>/dev/null || true
  wait_for 30 "node $i (pid $pid) to exit" exited "$pid"
  rm -f "$dir/node$i.pid"
  echo "node $i stopped"
}

signal_node() {
  local signal=$1 i pid
  i=$(node_number "${2:-}")
  pid=$(running_pid "$i") || die "node $i is not running"
  kill "-$signal" "$pid"
  echo "node $i: SIG$signal sent (pid $pid)"
}

# The node whose /status.json says it leads (its number is its node id).
leader() {
  [ -f "$dir/nodes" ] || die "no cluster in $dir"
  local n
  n=$(node_count)
  for i in $(seq 1 "$n"); do
    if curl -fsS -m 2 "http://127.0.0.1:$(public_port "$i")/status.json" 2>/dev/null |
      grep -q '"state":"Leader"'; then
      echo "$i"
      return
    fi
  done
  die "no node reports itself leader"
}

status() {
  [ -f "$dir/nodes" ] || die "no cluster in $dir ('$0 start' first)"
  bin=$(find_binary)
  load_transport
  local n pid
  n=$(node_count)
  for i in $(seq 1 "$n"); do
    if pid=$(running_pid "$i"); then
      echo "== node $i: pid $pid, public 127.0.0.1:$(public_port "$i"), internal 127.0.0.1:$(internal_port "$i")"
      admin status --target "127.0.0.1:$(internal_port "$i")" 2>&1 | sed 's/^/   /' || true
    else
      echo "== node $i: not running (log: $dir/node$i.log)"
    fi
  done
}

logs() {
  [ -f "$dir/nodes" ] || die "no cluster in $dir"
  local n files=()
  n=$(node_count)
  for i in $(seq 1 "$n"); do
    files+=("$dir/node$i.log")
  done
  exec tail -n 20 -F "${files[@]}"
}

case "$command" in
  start) shift; start "$@" ;;
  stop) stop ;;
  status) status ;;
  logs) logs ;;
  clean) stop; rm -rf "$dir"; echo "removed $dir" ;;
  kill) kill_node "${2:-}" ;;
  start-node) start_node "${2:-}" ;;
  stop-node) stop_node "${2:-}" ;;
  pause) signal_node STOP "${2:-}" ;;
  resume) signal_node CONT "${2:-}" ;;
  leader) leader ;;
  *) usage ;;
esac
