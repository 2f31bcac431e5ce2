#!/usr/bin/env bash
# A consistent copy of the code for one device call, so that work in progress elsewhere in the shared
# checkout (a helper's half-edited file) cannot break the build there. The copy is HEAD (git archive)
# plus the working-tree files named on the command line, with dist/ compiled and .device/ bundled
# inside it (scripts/device-bundle.sh DIR). It lives in .snap/NAME (git-ignored).
# Usage (repo root, here):  scripts/device-snapshot.sh NAME [PATH...]
# Then `run` with carry [".snap/NAME"] and a command starting with:
#   cd .snap/NAME && source .device/env.sh && bash .device/setup.sh && ...
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: scripts/device-snapshot.sh NAME [PATH...]" >&2; exit 2; }
name=$1; shift
root=$(git rev-parse --show-toplevel); cd "$root"
grep -qx '/.snap/' .git/info/exclude 2>/dev/null || echo '/.snap/' >> .git/info/exclude
snap=.snap/$name
rm -rf "$snap"; mkdir -p "$snap"
git archive HEAD | tar -x -C "$snap"
for p in "$@"; do mkdir -p "$snap/$(dirname "$p")"; cp -a "$p" "$snap/$p"; done
scripts/device-bundle.sh "$snap"
du -sh "$snap"
