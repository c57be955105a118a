import { useEffect, useState } from 'preact/hooks';
import { api, type List, session, when } from '../api.ts';
import { html } from '../html.ts';
import { ErrorNote, useLoad } from '../load.ts';

interface Tenant {
  id: string;
  name: string;
  created_at: number;
  limits: Record<string, number>;
}
interface Key {
  id: string;
  name: string;
  prefix: string;
  created_at: number;
  revoked_at: number | null;
}
interface Worker {
  worker_id: string;
  url: string;
  backbone: string;
  queue_depth: number;
  max_queue: number;
  running_jobs: number;
  loaded_adapters: string[];
  heartbeat_age_s: number;
}

const WORKERS_REFRESH_MS = 2000;

export function AdminPage() {
  const [token, setToken] = useState(session.admin());
  if (!token) return html`<${AdminSignIn} onToken=${setToken} />`;
  return html`<section>
    <h1>Admin</h1>
    <${Workers} />
    <${Tenants} />
  </section>`;
}

function AdminSignIn({ onToken }: { onToken: (t: string) => void }) {
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    const token = String(new FormData(e.target as HTMLFormElement).get('token') ?? '').trim();
    session.setAdmin(token);
    try {
      await api('/admin/v1/tenants', { admin: true });
      onToken(token);
    } catch (err) {
      sessionStorage.removeItem('ladder.adminToken');
      setError((err as Error).message);
    }
  };
  return html`<section class="card narrow">
    <h1>Admin sign-in</h1>
    <form onSubmit=${submit}>
      <label for="admin-token">Admin token</label>
      <input id="admin-token" name="token" type="password" autocomplete="off" required />
      <button type="submit">Sign in</button>
    </form>
    <${ErrorNote} error=${error} />
  </section>`;
}

function Workers() {
  const workers = useLoad(() => api<List<Worker>>('/admin/v1/workers', { admin: true }), []);
  useEffect(() => {
    const t = setInterval(workers.reload, WORKERS_REFRESH_MS);
    return () => clearInterval(t);
  }, []);
  return html`<h2>Workers</h2>
    <${ErrorNote} error=${workers.error} />
    <div class="table-wrap"><table id="workers">
      <thead><tr><th>Worker</th><th>Backbone</th><th>Queue</th><th>Running jobs</th><th>Loaded adapters</th><th>Heartbeat age</th></tr></thead>
      <tbody>${(workers.data?.data ?? []).map(
        (w) => html`<tr key=${w.worker_id}>
          <td><code>${w.worker_id}</code><br /><small>${w.url}</small></td><td>${w.backbone}</td>
          <td>${w.queue_depth} / ${w.max_queue}</td><td>${w.running_jobs}</td>
          <td>${w.loaded_adapters.length ? html`<ul class="plain">${w.loaded_adapters.map((a) => html`<li><code>${a}</code></li>`)}</ul>` : 'none'}</td>
          <td class="age">${w.heartbeat_age_s.toFixed(1)} s</td>
        </tr>`,
      )}</tbody>
    </table></div>`;
}

function Tenants() {
  const tenants = useLoad(() => api<List<Tenant>>('/admin/v1/tenants', { admin: true }), []);
  return html`<h2>Tenants</h2>
    <${ErrorNote} error=${tenants.error} />
    <div class="table-wrap"><table id="tenants">
      <thead><tr><th>Name</th><th>ID</th><th>Limits</th><th>Created (UTC)</th><th>Keys</th></tr></thead>
      <tbody>${(tenants.data?.data ?? []).map((t) => html`<${TenantRow} key=${t.id} tenant=${t} />`)}</tbody>
    </table></div>`;
}

function TenantRow({ tenant }: { tenant: Tenant }) {
  const [open, setOpen] = useState(false);
  const [keys, setKeys] = useState<Key[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const toggle = async () => {
    setOpen(!open);
    if (keys) return;
    try {
      setKeys(
        (await api<List<Key>>(`/admin/v1/tenants/${encodeURIComponent(tenant.id)}/keys`, { admin: true }))
          .data,
      );
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const limits = Object.entries(tenant.limits)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return html`<tr>
      <td>${tenant.name}</td><td><code>${tenant.id}</code></td><td><small>${limits}</small></td><td>${when(tenant.created_at)}</td>
      <td><button type="button" class="secondary" aria-expanded=${open} aria-controls=${`keys-${tenant.id}`} onClick=${toggle}>
        ${open ? 'Hide keys' : 'Show keys'}</button></td>
    </tr>
    ${
      open &&
      html`<tr id=${`keys-${tenant.id}`}><td colspan="5">
      <${ErrorNote} error=${error} />
      <table class="keys"><thead><tr><th>Name</th><th>Prefix</th><th>Created</th><th>Revoked</th></tr></thead>
        <tbody>${(keys ?? []).map(
          (
            k,
          ) => html`<tr key=${k.id}><td>${k.name || '–'}</td><td><code>${k.prefix}…</code></td><td>${when(k.created_at)}</td>
            <td>${k.revoked_at ? when(k.revoked_at) : 'active'}</td></tr>`,
        )}</tbody></table>
    </td></tr>`
    }`;
}
