// Prometheus metrics of one server (its own prom-client Registry, so several servers can live in
// one process, as in tests). Token counters and latency histograms are fed by reply.ts; the
// processing / queued gauges read the engine's own counters when scraped.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine } from '../engine/types.ts';

// Latency buckets in seconds: TTFT spans cached prompts (ms) to long CPU prefills (minutes).
const TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const ITL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly promptTokens = new Counter({ name: 'mixtile_prompt_tokens_total', help: 'Prompt tokens of finished requests', registers: [this.registry] });
  readonly cachedTokens = new Counter({ name: 'mixtile_prompt_tokens_cached_total', help: 'Prompt tokens served from the prefix cache', registers: [this.registry] });
  readonly generatedTokens = new Counter({ name: 'mixtile_generated_tokens_total', help: 'Generated tokens', registers: [this.registry] });
  readonly requests = new Counter({ name: 'mixtile_requests_total', help: 'Generation requests by how they finished', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly ttft = new Histogram({ name: 'mixtile_time_to_first_token_seconds', help: 'Time from request to its first generated token', buckets: TTFT_BUCKETS, registers: [this.registry] });
  readonly interToken = new Histogram({ name: 'mixtile_inter_token_latency_seconds', help: 'Time between consecutive generated tokens of one request', buckets: ITL_BUCKETS, registers: [this.registry] });

  /** `engine()` is read at scrape time: undefined while the model loads or after keep_alive unloaded it. */
  constructor(engine: () => Engine | undefined) {
    new Gauge({
      name: 'mixtile_requests_processing',
      help: 'Requests holding a slot (prefill or decode)',
      registers: [this.registry],
      collect() {
        this.set(engine()?.stats().running ?? 0);
      },
    });
    new Gauge({
      name: 'mixtile_requests_queued',
      help: 'Requests waiting for a slot',
      registers: [this.registry],
      collect() {
        this.set(engine()?.stats().queued ?? 0);
      },
    });
    new Gauge({
      name: 'mixtile_slots',
      help: 'Concurrent sequences the engine runs (--parallel)',
      registers: [this.registry],
      collect() {
        this.set(engine()?.stats().slots ?? 0);
      },
    });
  }
}
