/**
 * A live subscription to one job's Server-Sent Events (`GET /api/training/jobs/{id}/events`).
 *
 * The stream sends a `snapshot` of the job first, then every event of its log with `id: <sequence>`, and a final
 * `end` when the job is terminal. The subscription survives the gateway or the trainer going away: it reconnects
 * with the last sequence it saw (the browser's own `Last-Event-ID` retry, or `?after=` after an HTTP error) and
 * drops any event it already delivered, so the handlers see each event exactly once and in order.
 *
 * Without an API token it uses the browser's EventSource. EventSource cannot send an `Authorization` header, so
 * with a token it reads the same stream with fetch (sending `Authorization` and `Last-Event-ID` itself).
 */
import type { ApiClient } from './client';
import { EVENT_TYPES, type Job, type JobEvent } from './types';

export type StreamState = 'connecting' | 'open' | 'reconnecting' | 'ended' | 'unauthorized' | 'closed';

export interface JobStreamHandlers {
  /** The job as it is when the (re)connection starts. */
  onSnapshot?: (job: Job) => void;
  /** Each event of the job's log, once, in sequence order. */
  onEvent?: (event: JobEvent) => void;
  /** The job is terminal and every event was delivered. */
  onEnd?: () => void;
  onStateChange?: (state: StreamState) => void;
}

export interface WatchOptions {
  /** Deliver only events with a sequence above this (0: the whole log). */
  after?: number;
  /** 'auto' (default): EventSource without a token, fetch with one. */
  transport?: 'auto' | 'eventsource' | 'fetch';
  /** First delay before reconnecting after an error, doubled up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
  /** The EventSource class to use (tests pass their own). */
  EventSourceImpl?: typeof EventSource;
}

/** One parsed SSE message. */
export interface SseMessage {
  event: string;
  data: string;
  id: string | null;
}

/** Incremental parser of the `text/event-stream` format (enough of the WHATWG rules for this API). */
export class SseParser {
  private buffer = '';
  private event = '';
  private data: string[] = [];
  private id: string | null = null;

  /** Feeds a chunk of text; returns the messages completed by it. */
  push(chunk: string): SseMessage[] {
    this.buffer += chunk;
    const out: SseMessage[] = [];
    let nl: number;
    while ((nl = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      // A CR at the very end may be the first half of a CRLF split across chunks: wait for the next chunk.
      if (nl === this.buffer.length - 1 && this.buffer[nl] === '\r') break;
      const line = this.buffer.slice(0, nl);
      const sepLen = this.buffer.startsWith('\r\n', nl) ? 2 : 1;
      this.buffer = this.buffer.slice(nl + sepLen);
      if (line === '') {
        // As the standard says: a message without data is not dispatched.
        if (this.data.length > 0) {
          out.push({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
        }
        this.event = '';
        this.data = [];
        this.id = null;
        continue;
      }
      if (line.startsWith(':')) continue; // comment / keep-alive
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
      else if (field === 'id') this.id = value;
    }
    return out;
  }
}

/**
 * Subscribes to a job's events. Returns the function that ends the subscription (it never touches the job).
 */
export function watchJob(client: ApiClient, jobId: string, handlers: JobStreamHandlers, options: WatchOptions = {}): () => void {
  let lastSequence = options.after ?? 0;
  let stopped = false;
  let ended = false;
  let retryMs = options.retryMs ?? 1000;
  const maxRetryMs = options.maxRetryMs ?? 10000;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let closeCurrent: (() => void) | null = null;
  let state: StreamState | null = null;

  const setState = (s: StreamState) => {
    if (s !== state) {
      state = s;
      handlers.onStateChange?.(s);
    }
  };

  const handle = (msg: SseMessage) => {
    if (stopped || ended) return;
    if (msg.event === 'snapshot') {
      retryMs = options.retryMs ?? 1000;
      setState('open');
      try {
        handlers.onSnapshot?.(JSON.parse(msg.data) as Job);
      } catch {
        /* a malformed snapshot must not end the watch */
      }
      return;
    }
    if (msg.event === 'end') {
      ended = true;
      closeCurrent?.();
      setState('ended');
      handlers.onEnd?.();
      return;
    }
    if (!(EVENT_TYPES as readonly string[]).includes(msg.event)) return;
    let event: JobEvent;
    try {
      event = JSON.parse(msg.data) as JobEvent;
    } catch {
      return;
    }
    const seq = typeof event.sequence === 'number' ? event.sequence : Number(msg.id ?? 0);
    // A reconnection may replay what was already delivered: each event once.
    if (seq <= lastSequence) return;
    lastSequence = seq;
    setState('open');
    handlers.onEvent?.({ ...event, type: (event.type ?? msg.event) as JobEvent['type'] } as JobEvent);
  };

  const scheduleReconnect = () => {
    if (stopped || ended || timer) return;
    setState('reconnecting');
    timer = setTimeout(() => {
      timer = null;
      connect();
    }, retryMs);
    retryMs = Math.min(retryMs * 2, maxRetryMs);
  };

  const useFetch =
    options.transport === 'fetch' ||
    (options.transport !== 'eventsource' && Object.keys(client.authHeaders()).length > 0) ||
    (options.transport !== 'eventsource' && typeof (options.EventSourceImpl ?? globalThis.EventSource) === 'undefined');

  const connectEventSource = () => {
    const ES = options.EventSourceImpl ?? globalThis.EventSource;
    const es = new ES(client.eventsUrl(jobId, lastSequence));
    closeCurrent = () => es.close();
    const listener = (e: Event) => {
      const me = e as MessageEvent<string>;
      handle({ event: e.type, data: me.data, id: me.lastEventId || null });
    };
    es.addEventListener('snapshot', listener);
    es.addEventListener('end', listener);
    for (const t of EVENT_TYPES) es.addEventListener(t, listener);
    es.onerror = () => {
      if (stopped || ended) return;
      if (es.readyState === 2 /* CLOSED: an HTTP error, the browser will not retry */) {
        es.close();
        scheduleReconnect();
      } else {
        // The connection dropped; the browser retries by itself, sending Last-Event-ID.
        setState('reconnecting');
      }
    };
  };

  const connectFetch = () => {
    const controller = new AbortController();
    closeCurrent = () => controller.abort();
    const headers: Record<string, string> = { Accept: 'text/event-stream', ...client.authHeaders() };
    if (lastSequence > 0) headers['Last-Event-ID'] = String(lastSequence);
    (async () => {
      try {
        const response = await fetch(client.eventsUrl(jobId), { headers, signal: controller.signal, cache: 'no-store' });
        if (response.status === 401) {
          setState('unauthorized');
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        const parser = new SseParser();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const msg of parser.push(decoder.decode(value, { stream: true }))) handle(msg);
          if (ended || stopped) {
            controller.abort();
            return;
          }
        }
      } catch {
        if (controller.signal.aborted) return;
      }
      scheduleReconnect();
    })();
  };

  const connect = () => {
    if (stopped || ended) return;
    setState(state === null ? 'connecting' : 'reconnecting');
    if (useFetch) connectFetch();
    else connectEventSource();
  };

  connect();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    closeCurrent?.();
    if (!ended) setState('closed');
  };
}
