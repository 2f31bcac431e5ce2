#!/usr/bin/env bash
# Snapshot for bench/amx/accuracy-run.sh (one device call): HEAD as scripts/device-snapshot.sh makes it,
# plus before/ = bench/amx, native/src and native/cmake of BEFORE (default a6965e3, the commit before
# INT8 group 32 / BF16 down), whose amx-bench gets the `--main` switch (main tables only) so the
# before/after speed runs alternate in the same call.
# Then: run with carry [".snap/acc"] and
#   cd .snap/acc && export MIXTILE_NO_CUDA=1 && source .device/env.sh && bash .device/setup.sh && bash bench/amx/accuracy-run.sh
set -euo pipefail
before=${1:-a6965e3}
cd "$(git rev-parse --show-toplevel)"
scripts/device-snapshot.sh acc
mkdir -p .snap/acc/before
git archive "$before" bench/amx native/src native/cmake | tar -x -C .snap/acc/before
b=.snap/acc/before/bench/amx/bench.cc
grep -q -- '--main' "$b" || {
  sed -i 's|^  if (argc > 1) mixtile::set_threads(std::atoi(argv\[1\]));|&\n  const bool main_only = argc > 2 \&\& std::string(argv[2]) == "--main";|' "$b"
  sed -i 's|^  // Kernel knobs (kernels.h KernelTuning): prefetch distance x K blocking of a single row pair.|  if (main_only) return 0;\n&|' "$b"
  sed -i '0,/#include <vector>/s||#include <string>\n#include <vector>|' "$b"
}
grep -c 'main_only' "$b"
