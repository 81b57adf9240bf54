#!/bin/sh
# Forms the cluster once: `rekor-node init` against $REKOR_TARGET with the voters in
# $INIT_MEMBERS (space-separated `ID=INTERNAL_ADDR,PUBLIC_ADDR`). The admin call's
# credentials come from the environment (REKOR_CLUSTER_SECRET_FILE, REKOR_ADMIN_TLS_CA_FILE,
# REKOR_ADMIN_TLS_CERT_FILE, REKOR_ADMIN_TLS_KEY_FILE).
#
# Idempotent: a node that already belongs to a cluster answers init with 409 Conflict, which
# counts as done, so re-running the Job (or a second install hook) changes nothing. Until the
# target answers at all (its pod is starting), it retries every $INIT_RETRY_S seconds, up
# to $INIT_TRIES times.
#
# Runs in the rekor-node image (busybox sh); the Helm chart's init Job mounts it from a ConfigMap
# and cluster-tests/tests/container_image.rs runs it against a node in a container.
set -u
tries=${INIT_TRIES:-60}
retry_s=${INIT_RETRY_S:-5}
: "${REKOR_TARGET:?REKOR_TARGET must name node 1's internal address}"
: "${INIT_MEMBERS:?INIT_MEMBERS must list the voters}"

set --
for member in $INIT_MEMBERS; do
  set -- "$@" --member "$member"
done

attempt=1
while :; do
  if answer=$(RUST_BACKTRACE=0 rekor-node init "$@" 2>&1); then
    echo "$answer"
    echo "cluster formed"
    exit 0
  fi
  case "$answer" in
    *"409 Conflict"*)
      echo "cluster already formed (init answered 409 Conflict); nothing to do"
      exit 0
      ;;
  esac
  if [ "$attempt" -ge "$tries" ]; then
    echo "init failed after $attempt attempts: $answer" >&2
    exit 1
  fi
  echo "init attempt $attempt failed, retrying in ${retry_s}s: $(echo "$answer" | head -n 1)"
  attempt=$((attempt + 1))
  sleep "$retry_s"
done
