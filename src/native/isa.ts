// CPU features and kernel settings of the native addon: what doctor shows, what tests force.
import { addon } from './addon.ts';

export const ISA_LEVELS = ['scalar', 'avx2', 'avx512', 'avx512vnni', 'avx512bf16', 'amx'] as const;
export type IsaLevel = (typeof ISA_LEVELS)[number];

export interface IsaInfo {
  cpu: string;
  /** Highest level the CPU and OS support. */
  detected: IsaLevel;
  /** Level kernels use now (MIXTILE_ISA or setIsa may lower it). */
  active: IsaLevel;
  features: string[];
  /** AMX tile data permission granted by the kernel (false on non-AMX CPUs). */
  amxTile: boolean;
  /** Threads of the native pool. */
  threads: number;
}

export function isaInfo(): IsaInfo {
  return addon().isaInfo() as IsaInfo;
}

/** Levels this machine can run, lowest first (tests run each). */
export function supportedIsas(): IsaLevel[] {
  const top = ISA_LEVELS.indexOf(isaInfo().detected);
  return ISA_LEVELS.slice(0, top + 1);
}

/** Forces kernels to `level` or lower; throws if the CPU lacks it. */
export function setIsa(level: IsaLevel): void {
  addon().setIsa(level);
}

/** Resizes the native thread pool (>= 1); returns the new size. */
export function setThreads(n: number): number {
  return addon().setThreads(n) as number;
}

/** Tests only: runs one pool job of nTasks tasks; how often each ran and the highest thread index seen. */
export function poolRunCounts(nTasks: number): { counts: Int32Array; maxThread: number } {
  return addon().poolRunCounts(nTasks) as { counts: Int32Array; maxThread: number };
}

/** Idle pool workers keep spinning (no sleep) for the next `us` µs (hybrid decode opens this per MoE layer). */
export function poolKeepHot(us: number): void {
  addon().poolKeepHot(us);
}

/** Tests only: pool workers asleep now. */
export function poolSleepingWorkers(): number {
  return addon().poolSleepingWorkers() as number;
}

/** Tests only: pool worker `worker` (1 .. threads-1) sleeps `us` µs before claiming each job's work; 0 ends it. */
export function poolStallWorker(worker: number, us: number): void {
  addon().poolStallWorker(worker, us);
}
