#!/usr/bin/env bash
# Puts a whole base commit (TS compiled to dist/, native sources) into SNAP/base for a device script that runs a
# base against the snapshot in one call (hybrid-bisect.sh). node_modules is linked on the device (../node_modules).
# Usage (repo root, here): bench/device/bisect-base.sh .snap/NAME COMMIT
set -euo pipefail
snap=$1; base=$2
root=$(git rev-parse --show-toplevel); cd "$root"
rm -rf "$snap/base"; mkdir -p "$snap/base"
git archive "$base" | tar -x -C "$snap/base"
ln -s "$root/node_modules" "$snap/base/node_modules"
( cd "$snap/base" && npx tsc -p tsconfig.build.json )
rm "$snap/base/node_modules"
echo "$snap/base: $(git log --oneline -1 "$base")"
