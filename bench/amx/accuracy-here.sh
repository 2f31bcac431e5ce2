#!/usr/bin/env bash
# AMX whole-model accuracy on a CPU without AMX but with AVX-512 BF16 + VNNI (e.g. Zen 4): builds
# the emulated-AMX addon (-DMIXTILE_AMX_EMULATE: ISA amx, tiles on a scalar model) into its own
# folder, then runs test/hf/amx-int8-accuracy.ts with every expert on the AVX-512 path over the
# AMX panels (MIXTILE_AMX_MIN_TOKENS=1000000), which computes the AMX kernels' numbers: the same
# int32 sums (exact) and the same float scaling order, so top-1 and KL are those of the AMX kernels.
# Linear layers stay off AMX (their tiles would run on the scalar model).
# usage: bench/amx/accuracy-here.sh MODEL.gguf [positions=2048] [--ref SPEC] [--test SPEC]
#   e.g. bench/amx/accuracy-here.sh /tmp/a3b-2l-f32.gguf 2048 --ref generic --test AMXInt8@32
set -euo pipefail
cd "$(dirname "$0")/../.."
D=${MIXTILE_BUILD_DIR:-native/build-amxemu-acc}
if [ ! -f "$D/Release/mixtile.node" ] || ! grep -q MIXTILE_AMX_EMULATE "$D/CMakeCache.txt"; then
  MIXTILE_NO_CUDA=1 MIXTILE_BUILD_DIR=$D npm run build:native
  MIXTILE_NO_CUDA=1 cmake -DCMAKE_CXX_FLAGS="-DBUILDING_NODE_EXTENSION -DMIXTILE_AMX_EMULATE" "$D" >/dev/null
fi
MIXTILE_NO_CUDA=1 cmake --build "$D" -j2 >/dev/null
model=$1
shift
pos=2048
if [ $# -gt 0 ] && [[ $1 != --* ]]; then pos=$1; shift; fi
MIXTILE_ADDON=$PWD/$D/Release/mixtile.node MIXTILE_AMX_MIN_TOKENS=1000000 MIXTILE_AMX_LINEAR=off MIXTILE_REPACK_CACHE=0 \
  node --import tsx test/hf/amx-int8-accuracy.ts "$model" "$pos" 512 "$@"
