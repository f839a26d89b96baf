import { useCallback, useEffect, useState } from 'react';
import type { ApiClient } from '../api/client';
import type { ApiKey, AuditEntry, CreatedApiKey } from '../api/types';

/** The admin's key management (`/api/admin/keys`) and the latest audit log entries (`/api/admin/audit`). */
export function KeysPanel({ client }: { client: ApiClient }) {
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [audit, setAudit] = useState<AuditEntry[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<CreatedApiKey | null>(null);
  const [name, setName] = useState('');
  const [role, setRole] = useState<'user' | 'viewer' | 'admin'>('user');

  const load = useCallback(async () => {
    try {
      const [k, a] = await Promise.all([
        client.request<{ keys: ApiKey[] }>('GET', '/api/admin/keys', 'listKeys'),
        client.request<{ entries: AuditEntry[] }>('GET', '/api/admin/audit?limit=20', 'audit'),
      ]);
      setKeys(k.keys);
      setAudit(a.entries);
      setError(null);
    } catch (err) {
      setError((err as Error).message);
    }
  }, [client]);

  useEffect(() => {
    void load();
  }, [load]);

  const create = async () => {
    try {
      setCreated(await client.request<CreatedApiKey>('POST', '/api/admin/keys', 'createKey', { name: name.trim(), role }));
      setName('');
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };

  const revoke = async (id: string) => {
    try {
      await client.request<ApiKey>('DELETE', `/api/admin/keys/${encodeURIComponent(id)}`, 'revokeKey');
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <section className="keys" data-testid="keys-panel">
      <h2>API keys</h2>
      {error && (
        <div className="banner banner-error" role="alert">
          {error}
        </div>
      )}
      {created && (
        <div className="banner" role="status" data-testid="created-key">
          Key for {created.name} ({created.role}), shown this once: <code>{created.key}</code>
        </div>
      )}
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          if (name.trim()) void create();
        }}
      >
        <input aria-label="Key name" placeholder="name (alice, ci-bot)" value={name} onChange={(e) => setName(e.target.value)} />
        <select aria-label="Role" value={role} onChange={(e) => setRole(e.target.value as 'user' | 'viewer' | 'admin')}>
          <option value="user">user</option>
          <option value="viewer">viewer</option>
          <option value="admin">admin</option>
        </select>
        <button type="submit">Create key</button>
      </form>
      <table>
        <thead>
          <tr>
            <th>ID</th>
            <th>Name</th>
            <th>Role</th>
            <th>Created</th>
            <th>Status</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {keys.map((k) => (
            <tr key={k.id}>
              <td>
                <code>{k.id}</code>
              </td>
              <td>{k.name}</td>
              <td>{k.role}</td>
              <td>{k.created_at.slice(0, 19).replace('T', ' ')}</td>
              <td>{k.active ? 'active' : 'revoked'}</td>
              <td>
                {k.active && (
                  <button type="button" className="link" onClick={() => void revoke(k.id)}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Audit log</h2>
      <ul className="audit">
        {audit.map((e) => (
          <li key={e.id}>
            {e.time.slice(0, 19).replace('T', ' ')} · {e.actor} ({e.role}) · {e.action} {e.target}
          </li>
        ))}
      </ul>
    </section>
  );
}
