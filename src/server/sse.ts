// Streaming responses: Server-Sent Events (OpenAI, `data: {…}` … `data: [DONE]`) and NDJSON
// (Ollama). The body pulls from an async iterable, so a slow client slows generation's
// consumer, not the engine; a client that goes away ends the iteration, which cancels the request.

const ENCODER = new TextEncoder();

interface StreamOptions {
  /** Wire form of each item (one SSE event or one NDJSON line). */
  frame: (item: unknown) => string;
  /** Written after the last item (SSE's `data: [DONE]`). */
  trailer?: string;
  /** Body of an error thrown mid-stream (headers are gone, so it goes in the stream). */
  errorItem: (err: unknown) => unknown;
  headers: Record<string, string>;
}

function streamResponse(items: AsyncIterable<unknown>, o: StreamOptions): Response {
  const it = items[Symbol.asyncIterator]();
  let finished = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (finished) return;
      try {
        const r = await it.next();
        if (!r.done) {
          controller.enqueue(ENCODER.encode(o.frame(r.value)));
          return;
        }
      } catch (err) {
        controller.enqueue(ENCODER.encode(o.frame(o.errorItem(err))));
      }
      finished = true;
      if (o.trailer) controller.enqueue(ENCODER.encode(o.trailer));
      controller.close();
    },
    async cancel() {
      // The client disconnected: stop the source (its finally blocks cancel the engine request).
      finished = true;
      await it.return?.();
    },
  });
  return new Response(body, { status: 200, headers: o.headers });
}

/** `data: {json}\n\n` per item, then `data: [DONE]\n\n`. */
export function sseResponse(items: AsyncIterable<unknown>, errorItem: (err: unknown) => unknown): Response {
  return streamResponse(items, {
    frame: (item) => `data: ${JSON.stringify(item)}\n\n`,
    trailer: 'data: [DONE]\n\n',
    errorItem,
    headers: {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // Proxies such as nginx must not buffer the stream.
      'x-accel-buffering': 'no',
    },
  });
}

/** One JSON object per line (Ollama's `application/x-ndjson`). */
export function ndjsonResponse(items: AsyncIterable<unknown>, errorItem: (err: unknown) => unknown): Response {
  return streamResponse(items, {
    frame: (item) => `${JSON.stringify(item)}\n`,
    errorItem,
    headers: { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' },
  });
}

/** Several streams as one, in arrival order (OpenAI `n` > 1: each choice is its own engine request). */
export async function* mergeStreams<T>(streams: AsyncIterable<T>[]): AsyncGenerator<T> {
  const its = streams.map((s) => s[Symbol.asyncIterator]());
  const next = (i: number) => its[i]!.next().then((r) => ({ i, r }));
  const pending = new Map(its.map((_, i) => [i, next(i)]));
  try {
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values());
      if (r.done) pending.delete(i);
      else {
        pending.set(i, next(i));
        yield r.value;
      }
    }
  } finally {
    // Stopped early (client gone): end every source so each engine request is cancelled.
    await Promise.all(its.map((it) => it.return?.()));
  }
}
