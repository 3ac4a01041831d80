#!/bin/sh
# Rebuilds the generated profiles and the recorded `policy check` results in this folder.
# Run from the repository root after `npm run build`; test/policy/shipped.test.ts fails when they are stale.
set -e
KAUDIT=${KAUDIT:-"node bin/kaudit.js"}
DETECTIONS=${DETECTIONS:---no-detections}
for p in minimal recommended strict; do
  $KAUDIT policy generate --profile "$p" $DETECTIONS > "audit-policies/profiles/$p.yaml"
done
for f in audit-policies/examples/*.yaml audit-policies/profiles/*.yaml; do
  $KAUDIT policy check "$f" $DETECTIONS > "${f%.yaml}.check.txt" || true
done
