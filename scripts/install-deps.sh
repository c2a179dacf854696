#!/usr/bin/env bash
# Installs what building and testing kate needs on a fresh Debian 12 machine. Idempotent and quick
# when everything is present; safe to run as root (CI) or with sudo available.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

# A C compiler builds the bundled SQLite.
have cc || need_apt+=(build-essential)
# kubectl is the client the end-to-end tests drive; the Google Cloud SDK package provides the
# version-dispatching kubectl these machines use.
have kubectl || need_apt+=(kubectl)
# Images: scripts/build-busybox-image.sh packs the static busybox (the dynamic `busybox` package
# also has a /bin/busybox, so ask dpkg); the pull tests push with skopeo to a local docker-registry.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need_apt+=(busybox-static)
have skopeo || need_apt+=(skopeo)
have docker-registry || need_apt+=(docker-registry)
# Containers: runc runs them; the CNI plugins (bridge, host-local, loopback, portmap, in
# /usr/lib/cni) make the pod network, and need iptables for masquerading and host ports;
# iproute2 (`ip`) and nftables (`nft`) for the network and Services. Asked of dpkg: the tools are
# in /usr/sbin, often not on a user's PATH.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
for pkg in runc containernetworking-plugins iptables iproute2 nftables; do
  installed "$pkg" || need_apt+=("$pkg")
done

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

have cargo || { echo "install-deps: cargo (Rust toolchain) is required" >&2; exit 1; }
