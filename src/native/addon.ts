// Loads the native addon (native/build/Release/mixtile.node) once. Typed wrappers for each op
// live beside this file (src/native/<op>.ts) and read their functions from `addon()`.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// Both src/native/addon.ts and dist/native/addon.js sit two folders below the package root.
// MIXTILE_ADDON points at another build (e.g. a debug or per-worktree build folder).
const ADDON_PATH =
  process.env.MIXTILE_ADDON ?? fileURLToPath(new URL('../../native/build/Release/mixtile.node', import.meta.url));

// The raw export object; each src/native/<op>.ts narrows the functions it uses to a typed API.
export type RawAddon = Record<string, (...args: any[]) => any>;

let loaded: RawAddon | undefined;

/** The native addon's exports, loaded on first use. Throws a clear error if it was never built. */
export function addon(): RawAddon {
  if (loaded) return loaded;
  if (!existsSync(ADDON_PATH)) {
    throw new Error(`native addon not found at ${ADDON_PATH}; run "npm install" or "npm run build:native"`);
  }
  const require = createRequire(import.meta.url);
  loaded = require(ADDON_PATH) as RawAddon;
  return loaded;
}
