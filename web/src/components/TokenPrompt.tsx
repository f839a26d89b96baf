import { useState } from 'react';

/** Asks for the gateway's API token after a 401 (the gateway's GATEWAY_API_TOKEN). */
export function TokenPrompt({
  hadToken,
  onSubmit,
  onForget,
  onDismiss,
}: {
  hadToken: boolean;
  onSubmit: (token: string) => void;
  onForget?: () => void;
  onDismiss: () => void;
}) {
  const [value, setValue] = useState('');
  return (
    <div className="modal-backdrop" role="dialog" aria-modal="true" aria-labelledby="token-title" data-testid="token-prompt">
      <form
        className="modal"
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) onSubmit(value.trim());
        }}
      >
        <h2 id="token-title">API token required</h2>
        <p>
          {hadToken
            ? 'An API token is saved in this browser. Enter a new one to replace it (the gateway answers 401 to a wrong one).'
            : 'This gateway requires an API token (401). Enter it once; it is kept in this browser.'}
        </p>
        <label className="field">
          <span>API token</span>
          <input type="password" autoFocus value={value} onChange={(e) => setValue(e.target.value)} autoComplete="off" />
          <small>The value of GATEWAY_API_TOKEN, sent as "Authorization: Bearer …".</small>
        </label>
        <div className="actions">
          <button type="submit" className="primary" disabled={!value.trim()}>
            Save token
          </button>
          {onForget && (
            <button type="button" onClick={onForget}>
              Forget saved token
            </button>
          )}
          <button type="button" onClick={onDismiss}>
            Not now
          </button>
        </div>
      </form>
    </div>
  );
}
