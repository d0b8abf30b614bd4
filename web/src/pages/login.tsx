import { useState } from 'preact/hooks';
import { api } from '../api.ts';
import { farm } from '../store.ts';

/** Shown when the farm does not trust this machine: a user token opens a browser session. */
export function LoginPage() {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.login(token.trim());
      setToken('');
      farm.setAuth('ok');
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login" id="main" tabIndex={-1}>
      <form class="panel login-panel" onSubmit={submit} aria-labelledby="login-title">
        <p class="brand login-brand">
          <img src="./favicon.svg" alt="" width={26} height={26} />
          Archenland
        </p>
        <h1 id="login-title">Sign in to the farm</h1>
        <p class="muted">
          This computer is not trusted by the farm server. Enter a user token: the server makes one when it first starts, in{' '}
          <code>archenland-data/user-token</code>, and more with <code>archenland token create --role user</code>.
        </p>
        <label for="token">User token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="current-password"
          required
          value={token}
          onInput={(e) => setToken(e.currentTarget.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? 'login-error' : undefined}
        />
        {error && (
          <p class="form-error" id="login-error" role="alert">
            {error === 'wrong access token' ? 'That token is not right. Check it and try again.' : error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
