import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiClient } from '../api/client';
import { SseParser, watchJob } from '../api/events';
import { makeJob } from './fakeGateway';

describe('SseParser', () => {
  it('parses messages split anywhere across chunks, with CRLF, comments and multi-line data', () => {
    const p = new SseParser();
    const text = 'retry: 2000\r\n\r\nevent: snapshot\r\ndata: {"a":1}\r\n\r\n: keepalive\n\nid: 3\nevent: step\ndata: {"x":\ndata: 2}\n\n';
    const out = [];
    for (const ch of text) out.push(...p.push(ch));
    expect(out).toEqual([
      { event: 'snapshot', data: '{"a":1}', id: null },
      { event: 'step', data: '{"x":\n2}', id: '3' },
    ]);
  });
});

function sseResponse(body: string): Response {
  return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
}

describe('watchJob over fetch (with an API token)', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('sends Authorization, then Last-Event-ID when it reconnects, and delivers each event once', async () => {
    const requests: { url: string; headers: Record<string, string> }[] = [];
    const bodies = [
      `event: snapshot\ndata: ${JSON.stringify(makeJob({ status: 'training' }))}\n\nid: 1\nevent: log\ndata: {"sequence":1,"time":"t","type":"log","message":"a"}\n\nid: 2\nevent: log\ndata: {"sequence":2,"time":"t","type":"log","message":"b"}\n\n`,
      // The stream dropped without `end`; the replay repeats event 2.
      `event: snapshot\ndata: ${JSON.stringify(makeJob({ status: 'completed' }))}\n\nid: 2\nevent: log\ndata: {"sequence":2,"time":"t","type":"log","message":"b"}\n\nid: 3\nevent: status\ndata: {"sequence":3,"time":"t","type":"status","message":"","from_status":"training","to_status":"completed","reason":""}\n\nevent: end\ndata: {}\n\n`,
    ];
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string, init: RequestInit) => {
        requests.push({ url, headers: init.headers as Record<string, string> });
        return sseResponse(bodies[requests.length - 1]);
      }),
    );
    const client = new ApiClient({ getToken: () => 'tok' });
    const seen: number[] = [];
    const done = new Promise<void>((resolve) => {
      watchJob(client, 'job-1', { onEvent: (e) => seen.push(e.sequence), onEnd: resolve }, { retryMs: 5 });
    });
    await done;
    expect(seen).toEqual([1, 2, 3]);
    expect(requests).toHaveLength(2);
    expect(requests[0].headers.Authorization).toBe('Bearer tok');
    expect(requests[0].headers['Last-Event-ID']).toBeUndefined();
    expect(requests[1].headers['Last-Event-ID']).toBe('2');
  });

  it('stops and says so on a 401', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response('{"detail":"no"}', { status: 401 })));
    const client = new ApiClient({ getToken: () => 'wrong' });
    const state = await new Promise<string>((resolve) => {
      watchJob(client, 'job-1', { onStateChange: (s) => s === 'unauthorized' && resolve(s) }, { retryMs: 5 });
    });
    expect(state).toBe('unauthorized');
  });
});
