#!/usr/bin/env bash
# Builds a busybox container image from Debian's busybox-static package, because no registry on the
# internet is reachable from the machines kate runs its tests on. The output is an OCI image layout
# packed in a tar: `kate image import` and `skopeo copy oci-archive:FILE:NAME` both accept it.
#
# Usage: scripts/build-busybox-image.sh [OUTPUT]   (default: target/images/busybox.tar)
#
# The image is tagged docker.io/library/busybox:latest and docker.io/library/busybox:VERSION (the
# Debian package's upstream version, e.g. 1.35.0). Pods should use the VERSION tag or
# imagePullPolicy IfNotPresent: `:latest` defaults to Always, which would try the internet.
# The build is deterministic (fixed timestamps and owners, sorted entries, gzip -n), so the same
# package always gives the same digests.
set -euo pipefail
umask 022

repo_root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo_root/target/images/busybox.tar}

if [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" != "install ok installed" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "build-busybox-image: installing busybox-static" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq busybox-static >&2
fi
# Take the binary from the package's own file list: Debian's dynamic `busybox` package also ships
# a /bin/busybox, which would not run inside a container without its libraries.
busybox=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$')
version=$(dpkg-query -W -f='${Version}' busybox-static | sed -e 's/^[0-9]*://' -e 's/-[^-]*$//')
case "$(dpkg --print-architecture)" in
  amd64) arch=amd64 ;;
  arm64) arch=arm64 ;;
  i386) arch=386 ;;
  *) arch=$(dpkg --print-architecture) ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
layout=$work/layout

# The root filesystem: the static binary, one symlink per applet, and the few files a shell and
# `id` expect.
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,var/www,proc,sys,dev,tmp}
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
install -m 0755 "$busybox" "$rootfs/bin/busybox"
"$busybox" --list-full | while read -r applet; do
  [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$rootfs/$applet"
done
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

# The layer: an uncompressed tar (its digest is the diff ID) then gzipped (its digest names the
# blob).
mkdir -p "$layout/blobs/sha256"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
  -C "$rootfs" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -9 "$work/layer.tar"

# Moves a file into the layout's blobs, printing "DIGEST SIZE".
add_blob() {
  local digest size
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$layout/blobs/sha256/$digest"
  echo "$digest $size"
}

read -r layer_digest layer_size < <(add_blob "$work/layer.tar.gz")

cat >"$work/config.json" <<EOF
{"created":"1970-01-01T00:00:00Z","architecture":"$arch","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/build-busybox-image.sh from busybox-static $version"}]}
EOF
read -r config_digest config_size < <(add_blob "$work/config.json")

cat >"$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer_digest","size":$layer_size}]}
EOF
read -r manifest_digest manifest_size < <(add_blob "$work/manifest.json")

descriptor() {
  echo "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest_digest\",\"size\":$manifest_size,\"annotations\":{\"org.opencontainers.image.ref.name\":\"$1\"}}"
}
cat >"$layout/index.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[$(descriptor docker.io/library/busybox:latest),$(descriptor "docker.io/library/busybox:$version")]}
EOF
echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

mkdir -p "$(dirname "$out")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
  -C "$layout" -cf "$out.tmp.$$" oci-layout index.json blobs
# Concurrent builds of the same output (parallel test runs) each replace it whole.
mv "$out.tmp.$$" "$out"
echo "build-busybox-image: wrote $out (busybox $version, manifest sha256:$manifest_digest)" >&2
