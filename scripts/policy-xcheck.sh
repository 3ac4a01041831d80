#!/usr/bin/env bash
# Builds the differential-test harness for kaudit's audit-policy evaluator against the real kube-apiserver code
# (k8s.io/apiserver from the Go module proxy; nothing of it is kept in this repository), and prints the binary's
# path. test/policy/upstream-xcheck.test.ts runs when KAUDIT_XCHECK_BIN names it; .ci/run always builds it.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
version="${KAUDIT_XCHECK_APISERVER:-v0.36.0}"
out="${KAUDIT_XCHECK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kaudit/xcheck-$version}"
if [ -x "$out/xcheck" ] && cmp -s "$here/test/policy/xcheck/main.go" "$out/main.go"; then
  echo "$out/xcheck"
  exit 0
fi
command -v go >/dev/null || { echo "policy-xcheck: go is not installed" >&2; exit 3; }
rm -rf "$out" && mkdir -p "$out"
cp "$here/test/policy/xcheck/main.go" "$out/main.go"
cd "$out"
{
  go mod init xcheck
  go get "k8s.io/apiserver@$version"
  go mod tidy
  go build -o xcheck .
} >&2
echo "$out/xcheck"
