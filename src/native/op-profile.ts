// Per-operator counters of the CPU model ops (native/src/cpu/profile/): time, weight bytes read
// and FLOPs of each op kind, summed over calls while enabled. `mixtile bench -v` prints them.
import { addon } from './addon.ts';

export interface OpProfileRow {
  /** e.g. "attn.norm+qkv", "ffn.experts", "lm_head". */
  name: string;
  /** The op this row splits further, or null for a top-level op (top-level rows are disjoint). */
  parent: string | null;
  calls: number;
  ns: number;
  bytes: number;
  flops: number;
}

/** False when the loaded addon predates the counters (an older MIXTILE_ADDON build). */
export function opProfileAvailable(): boolean {
  return typeof addon().opProfileRead === 'function';
}

export function opProfileEnable(on: boolean): void {
  addon().opProfileEnable!(on);
}

export function opProfileReset(): void {
  addon().opProfileReset!();
}

export function opProfileRead(): OpProfileRow[] {
  return addon().opProfileRead!() as OpProfileRow[];
}
