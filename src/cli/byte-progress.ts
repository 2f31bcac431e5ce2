// A progress bar on stderr for commands that stream bytes to a file (synth, convert, quantize):
// MB done / total, MB/s and ETA, redrawn at most 10 times a second because writers report
// progress thousands of times per second.
import cliProgress from 'cli-progress';

export interface ByteProgress {
  onProgress: (done: number, total: number) => void;
  /** Ends the bar (idempotent) and returns the total bytes last reported. */
  stop: () => number;
  /** Seconds since the bar was made. */
  seconds: () => number;
}

/** Megabytes as an integer string, the unit every byte-streaming command prints. */
export const mb = (bytes: number): string => (bytes / 1e6).toFixed(0);

/** Example: `const p = byteProgress('convert'); await work({ onProgress: p.onProgress }); p.stop();` */
export function byteProgress(label: string): ByteProgress {
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% {doneMB}/{totalMB} MB {rate} MB/s eta {eta_formatted}`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  const t0 = performance.now();
  let started = false;
  let lastUpdate = 0;
  let total = 0;
  return {
    onProgress: (done, all) => {
      total = all;
      const now = performance.now();
      const payload = { doneMB: mb(done), totalMB: mb(all), rate: (done / 1e3 / Math.max(1, now - t0)).toFixed(0) };
      if (!started) bar.start(all, done, payload);
      else if (now - lastUpdate > 100 || done === all) bar.update(done, payload);
      started = true;
      lastUpdate = now;
    },
    stop: () => {
      if (started) bar.stop();
      started = false;
      return total;
    },
    seconds: () => (performance.now() - t0) / 1000,
  };
}
