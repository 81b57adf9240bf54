#!/usr/bin/env bash
# Assembles the root filesystem of the rekor-node image without pulling a base image:
#
#   deploy/image/build-rootfs.sh BINARY OUT.tar
#
# The tar holds exactly what the node needs at run time, taken from this (Debian) machine:
#   - /usr/local/bin/rekor-node and the shared libraries `ldd` names for it (glibc, libgcc_s, libm)
#     and the dynamic loader, at the paths the binary asks for;
#   - /bin/busybox (Debian's busybox-static) with a few applets: `sh` for the Kubernetes and
#     compose commands that derive a node id from a pod name, `wget` for the HEALTHCHECK on
#     /livez, and the handful of tools those scripts use;
#   - /etc/passwd and /etc/group with the unprivileged user rekor (uid 10001, group 0, as
#     deploy/Dockerfile makes it), /etc/nsswitch.conf, the CA bundle
#     /etc/ssl/certs/ca-certificates.crt (HTTPS to S3/GCS/Azure, witnesses, KMS);
#   - /var/lib/rekor (the data directory) and /etc/rekor, owned by 10001:0 mode 0770, and /tmp.
# Ownership is written into the tar (numeric ids), so the script needs no root and the image
# build needs no RUN step. deploy/image/Containerfile turns the tar into the image
# (deploy/image/build.sh does both).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BINARY OUT.tar" >&2
  exit 2
fi
binary=$1
out=$2
[ -x "$binary" ] || { echo "$binary is not an executable" >&2; exit 1; }
busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ! "$busybox" --list | grep -qx wget; then
  echo "busybox with the wget applet is needed (Debian: apt-get install busybox-static)" >&2
  exit 1
fi
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -r "$ca_bundle" ] || { echo "$ca_bundle missing (Debian: apt-get install ca-certificates)" >&2; exit 1; }

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
root=$staging/root
owned=$staging/owned
mkdir -p "$root"/{usr/local/bin,bin,etc/ssl/certs,tmp,var/lib} "$owned"/{var/lib/rekor,etc/rekor}

install -m 0755 "$binary" "$root/usr/local/bin/rekor-node"
install -m 0755 "$busybox" "$root/bin/busybox"

# Every shared object the ELF files load, at the path the loader looks for it (`ldd` prints
# "name => /path (addr)" for libraries and "/path (addr)" for the loader). A static busybox
# prints "not a dynamic executable" and adds nothing.
copy_libraries() {
  local elf=$1 path
  { ldd "$elf" 2>/dev/null || true; } | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' |
    while read -r path; do
      mkdir -p "$root$(dirname "$path")"
      cp -L "$path" "$root$path"
    done
}
copy_libraries "$binary"
copy_libraries "$busybox"
[ -n "$(find "$root" -name 'libc.so*' -print -quit)" ] || [ -z "$(ldd "$binary" 2>/dev/null | grep libc)" ] ||
  { echo "ldd named libc but it was not copied" >&2; exit 1; }

for applet in sh wget grep cat ls mkdir head od tr env id sleep chmod chown cp rm; do
  ln -s busybox "$root/bin/$applet"
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
rekor:x:10001:0:rekor-node:/var/lib/rekor:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
cp -L "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$root/tmp"
chmod 0770 "$owned/var/lib/rekor" "$owned/etc/rekor"

# One tar: the system files owned by root, then the node's writable directories owned by
# 10001:0. --sort and a fixed mtime make the tar depend only on its contents.
common=(--numeric-owner --sort=name --mtime=@0 --format=gnu)
tar -C "$root" "${common[@]}" --owner=0 --group=0 -cf "$out" .
tar -C "$owned" "${common[@]}" --owner=10001 --group=0 -rf "$out" ./var/lib/rekor ./etc/rekor
echo "wrote $out ($(du -h "$out" | cut -f1))"
