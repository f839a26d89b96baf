import { describe, expect, it } from 'vitest';
import { parseFrames } from '../api/playground';

describe('parseFrames', () => {
  it('parses complete SSE frames and keeps a partial one for the next chunk', () => {
    const text =
      'event: started\ndata: {"side":"base","seed":7}\n\n' +
      'event: delta\ndata: {"side":"base","text":"Hi","completion_tokens":1}\n\n' +
      'event: fini';
    const { frames, rest } = parseFrames(text);
    expect(frames.map((f) => f.event)).toEqual(['started', 'delta']);
    expect(frames[1].data).toEqual({ side: 'base', text: 'Hi', completion_tokens: 1 });
    expect(rest).toBe('event: fini');
    const next = parseFrames(rest + 'shed\ndata: {"side":"base","text":"Hi","finish_reason":"stop"}\n\n');
    expect(next.frames).toHaveLength(1);
    expect(next.frames[0].event).toBe('finished');
    expect(next.rest).toBe('');
  });
});
