import { act, fireEvent, render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../api/client';
import { KeysPanel } from '../components/KeysPanel';

const flush = () => act(async () => {
  await new Promise((r) => setTimeout(r, 0));
});

/** A gateway's admin API in memory: keys and the audit log. */
function adminGateway() {
  const keys: Record<string, unknown>[] = [
    { id: 'aaaaaaaaaaaa', name: 'root', role: 'admin', kind: 'user', created_at: '2026-01-01T00:00:00+00:00', created_by: 'cli', revoked_at: null, active: true },
  ];
  const calls: string[] = [];
  const fetchImpl = async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    const method = init?.method ?? 'GET';
    calls.push(`${method} ${url}`);
    const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
    if (url.startsWith('/api/admin/audit')) return json({ entries: [{ id: 1, time: '2026-01-01T00:00:00+00:00', actor: 'root', role: 'admin', action: 'key.create', target: 'aaaaaaaaaaaa', detail: '' }], total: 1 });
    if (url === '/api/admin/keys' && method === 'GET') return json({ keys });
    if (url === '/api/admin/keys' && method === 'POST') {
      const body = JSON.parse(String(init?.body));
      const made = { id: 'bbbbbbbbbbbb', name: body.name, role: body.role, kind: 'user', created_at: '2026-01-02T00:00:00+00:00', created_by: 'root', revoked_at: null, active: true };
      keys.push(made);
      return json({ ...made, key: 'agk_bbbbbbbbbbbb_secret' }, 201);
    }
    if (url === '/api/admin/keys/aaaaaaaaaaaa' && method === 'DELETE') {
      keys[0] = { ...keys[0], active: false, revoked_at: '2026-01-03T00:00:00+00:00' };
      return json(keys[0]);
    }
    return json({ detail: 'not found', code: 'NOT_FOUND' }, 404);
  };
  return { calls, client: new ApiClient({ getToken: () => 'agk_admin', fetch: fetchImpl as typeof fetch }) };
}

describe('KeysPanel', () => {
  it('lists keys, creates one (shown once) and revokes one', async () => {
    const gw = adminGateway();
    render(<KeysPanel client={gw.client} />);
    await flush();
    expect(screen.getByText('root')).toBeTruthy();
    expect(screen.getByText(/key\.create/)).toBeTruthy();
    fireEvent.change(screen.getByLabelText('Key name'), { target: { value: 'alice' } });
    fireEvent.click(screen.getByText('Create key'));
    await flush();
    expect(screen.getByTestId('created-key').textContent).toContain('agk_bbbbbbbbbbbb_secret');
    expect(screen.getByText('alice')).toBeTruthy();
    fireEvent.click(screen.getAllByText('Revoke')[0]);
    await flush();
    expect(gw.calls).toContain('DELETE /api/admin/keys/aaaaaaaaaaaa');
    expect(screen.getByText('revoked')).toBeTruthy();
  });
});
