import { useState } from 'preact/hooks';
import { api, session } from '../api.ts';
import { html } from '../html.ts';

/** Checks a key against /v1/models before keeping it (sessionStorage only). */
export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    session.setKey(key.trim());
    try {
      await api('/v1/models');
      onSignedIn();
    } catch (err) {
      session.signOut();
      setError((err as Error).message);
    }
  };
  return html`<section class="card narrow">
    <h1>Sign in</h1>
    <form onSubmit=${submit}>
      <label for="api-key">API key</label>
      <input id="api-key" type="password" autocomplete="off" required value=${key}
        onInput=${(e: Event) => setKey((e.target as HTMLInputElement).value)} />
      <p class="hint">Kept in this tab's session storage only; sent as an Authorization header.</p>
      <button type="submit">Sign in</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <p><a href="#/admin">Admin view</a> (admin token)</p>
  </section>`;
}
