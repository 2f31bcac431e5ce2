// nvidia-smi's figure for the VRAM a process holds, for `bench` beside the CUDA library's own count:
// nvidia-smi also counts the CUDA context (driver, kernels, cuBLAS handles), so it is what a user sees.
// In a container nvidia-smi often lists no processes (other PID namespace); then the GPU's whole
// memory.used is given, marked as such.
import { execFileSync } from 'node:child_process';

export interface SmiMemory {
  bytes: number;
  /** 'process': this process's used_memory; 'device': everything in use on that GPU. */
  scope: 'process' | 'device';
}

const MIB = 2 ** 20;

function smi(args: string[]): string | undefined {
  try {
    return execFileSync('nvidia-smi', args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return undefined; // not installed, no driver, or timed out: no figure
  }
}

/** The process's VRAM as nvidia-smi reports it, else GPU `index`'s memory in use; undefined without nvidia-smi. */
export function nvidiaSmiMemory(pid: number, index: number): SmiMemory | undefined {
  const apps = smi(['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits']);
  if (apps !== undefined) {
    let mib = 0;
    for (const line of apps.split('\n')) {
      const [p, used] = line.split(',').map((x) => x.trim());
      if (Number(p) === pid && Number.isFinite(Number(used))) mib += Number(used);
    }
    if (mib > 0) return { bytes: mib * MIB, scope: 'process' };
  }
  const dev = smi(['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', String(index)]);
  const mib = dev === undefined ? NaN : Number(dev.trim().split('\n')[0]);
  return Number.isFinite(mib) ? { bytes: mib * MIB, scope: 'device' } : undefined;
}
