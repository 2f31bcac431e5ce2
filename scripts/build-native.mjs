// Builds the native addon with cmake-js (Release) into native/build/Release/mixtile.node.
// Node headers come from npm's `nodedir` when set (offline machines), else cmake-js downloads them.
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const cmakeJs = fileURLToPath(new URL('../node_modules/cmake-js/bin/cmake-js', import.meta.url));
// MIXTILE_BUILD_DIR lets parallel work use separate build folders (load it with MIXTILE_ADDON).
const outDir = process.env.MIXTILE_BUILD_DIR ?? 'native/build';
const args = [cmakeJs, 'compile', '-d', 'native', '-O', outDir, '-p', String(availableParallelism()), '-l', 'warn'];
if (process.env.MIXTILE_NATIVE_DEBUG) args.push('-D');
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error('mixtile: building the native addon failed (needs cmake >= 3.18 and a C++17 compiler); see the log above');
  process.exit(r.status ?? 1);
}
