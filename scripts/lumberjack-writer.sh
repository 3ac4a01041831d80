#!/usr/bin/env bash
# Builds the tail tests' rotating writer (test/sources/lumberjack-writer: kube-apiserver's own log rotation,
# gopkg.in/natefinch/lumberjack.v2 from the Go module proxy, pinned by the committed go.sum) outside the repository,
# cached under a hash of its sources, and prints the binary's path. The tests and benchmarks/tail-rotation.mjs call
# this; .ci/run calls it first so that a machine without Go fails there.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
src="$here/test/sources/lumberjack-writer"
key="$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-16)"
out="${KAUDIT_LUMBERJACK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kaudit/lumberjack-writer-$key}"
if [ -x "$out/lumberjack-writer" ]; then
  echo "$out/lumberjack-writer"
  exit 0
fi
command -v go >/dev/null || { echo "lumberjack-writer: go is not installed (Go 1.21+ is needed to build the tail tests' writer)" >&2; exit 3; }
tmp="$(mktemp -d "${TMPDIR:-/tmp}/kaudit-ljw.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cp "$src/main.go" "$src/go.mod" "$src/go.sum" "$tmp/"
# -mod=mod with the committed go.sum: the module is fetched from the proxy and checked against the recorded hash.
(cd "$tmp" && GOFLAGS=-mod=mod go build -trimpath -o lumberjack-writer .) >&2
mkdir -p "$out"
mv "$tmp/lumberjack-writer" "$out/lumberjack-writer.tmp" && mv "$out/lumberjack-writer.tmp" "$out/lumberjack-writer"
echo "$out/lumberjack-writer"
