#!/bin/sh
# Rebuilds the generated profiles and the recorded `policy check` results in this folder.
# Run from the repository root after `npm run build`; test/policy/shipped.test.ts fails when they are stale.
# Profiles are generated against the bundled detection catalog (detections/); the recorded check results leave the
# detection-blind-spot check out, so that they do not change each time a detection rule is added.
set -e
KAUDIT=${KAUDIT:-"node bin/kaudit.js"}
for p in minimal recommended strict; do
  $KAUDIT policy generate --profile "$p" --rules detections > "audit-policies/profiles/$p.yaml"
done
for f in audit-policies/examples/*.yaml audit-policies/profiles/*.yaml; do
  $KAUDIT policy check "$f" --no-detections > "${f%.yaml}.check.txt" || true
done
