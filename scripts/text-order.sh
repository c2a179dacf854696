#!/bin/sh
# Regenerates kate/text-order.txt: the functions `kate server` runs while it starts and idles,
# then those it adds to answer a few kubectl commands, which the release build links next to
# each other in that order (see kate/build.rs). Run it after larger changes; functions it does
# not list still link, only further apart. Needs valgrind, python3 and kubectl.
set -eu
cd "$(dirname "$0")/.."

for tool in valgrind callgrind_control python3 kubectl; do
    command -v "$tool" >/dev/null || { echo "text-order: $tool is required" >&2; exit 1; }
done
cargo build --release -p kate
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=16999

# The server runs some 50 times slower under callgrind, hence the patient waits.
valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$work/profile" \
    ./target/release/kate server --data-dir "$work/data" --disable-agent --https-port "$port" \
    >"$work/log" 2>&1 &
server=$!
i=0
until grep -q "kate: ready" "$work/log"; do
    i=$((i + 1))
    [ "$i" -lt 600 ] || { echo "text-order: the server did not start:" >&2; cat "$work/log" >&2; exit 1; }
    sleep 0.5
done
sleep 10
# What ran so far (start-up and idling) goes to a profile of its own.
callgrind_control --dump=idle "$server" >/dev/null 2>&1
export KUBECONFIG="$work/data/kubeconfig.yaml"
kubectl="kubectl --request-timeout=120s"
$kubectl get namespaces >/dev/null
$kubectl create configmap text-order --from-literal=a=b >/dev/null
$kubectl get configmaps -A -o wide >/dev/null
$kubectl create deployment web --image=busybox:1.35.0 >/dev/null
$kubectl get deployments,replicasets,pods >/dev/null
$kubectl delete configmap text-order >/dev/null
sleep 10
kill -INT "$server"
wait "$server" || true

python3 "$(dirname "$0")/text_order.py" kate/text-order.txt "$work"/profile.* "$work/profile"
