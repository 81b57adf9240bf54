#!/usr/bin/env bash
# Builds the rekor-node image from a built binary, without pulling anything:
#
#   deploy/image/build.sh target/release/rekor-node rekor-node:latest
#
# build-rootfs.sh makes the root filesystem tar from the binary and this machine's Debian files
# (glibc, busybox-static, CA bundle), and podman builds Containerfile (FROM scratch) around it.
# PODMAN overrides the command (e.g. "podman --root DIR --runroot DIR --storage-driver vfs", as
# cluster-tests/tests/container_image.rs does to keep its images out of the machine's store).
# The image is in Docker format so that it keeps its HEALTHCHECK (OCI images have none).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 BINARY IMAGE_TAG" >&2
  exit 2
fi
binary=$1
tag=$2
here=$(cd "$(dirname "$0")" && pwd)
read -r -a podman <<< "${PODMAN:-podman}"

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
"$here/build-rootfs.sh" "$binary" "$context/rootfs.tar"
cp "$here/Containerfile" "$context/Containerfile"
version=$("$binary" --version | awk '{print $2}')
"${podman[@]}" build --format docker --file "$context/Containerfile" \
  --label "org.opencontainers.image.version=$version" --tag "$tag" "$context"
