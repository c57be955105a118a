import { render } from 'preact';
import { useState } from 'preact/hooks';
import { session } from './api.ts';
import { html } from './html.ts';
import { AdapterPage, AdaptersPage } from './pages/adapters.ts';
import { AdminPage } from './pages/admin.ts';
import { FilesPage } from './pages/files.ts';
import { JobPage } from './pages/job.ts';
import { JobsPage } from './pages/jobs.ts';
import { SignIn } from './pages/signin.ts';
import { UsagePage } from './pages/usage.ts';
import { href, useRoute } from './router.ts';

const NAV = [
  ['jobs', 'Jobs'],
  ['files', 'Files'],
  ['adapters', 'Adapters'],
  ['usage', 'Usage'],
  ['admin', 'Admin'],
] as const;

function page(route: string[]) {
  const [section, id] = route;
  if (section === 'files') return html`<${FilesPage} />`;
  if (section === 'jobs' && id) return html`<${JobPage} key=${id} id=${id} />`;
  if (section === 'adapters' && id) return html`<${AdapterPage} key=${id} id=${id} />`;
  if (section === 'adapters') return html`<${AdaptersPage} />`;
  if (section === 'usage') return html`<${UsagePage} />`;
  return html`<${JobsPage} />`;
}

function App() {
  const route = useRoute();
  const [signedIn, setSignedIn] = useState(session.key() !== null);
  const section = route[0] ?? 'jobs';
  const signOut = () => {
    session.signOut();
    setSignedIn(false);
  };
  const body =
    section === 'admin'
      ? html`<${AdminPage} />`
      : signedIn
        ? page(route)
        : html`<${SignIn} onSignedIn=${() => setSignedIn(true)} />`;
  return html`<a class="skip" href="#main" onClick=${(e: Event) => {
    e.preventDefault();
    document.getElementById('main')?.focus();
  }}>Skip to content</a>
    <header>
      <strong class="brand">Ladder</strong>
      <nav aria-label="Console">
        ${NAV.map(
          ([id, label]) =>
            html`<a href=${href(id)} aria-current=${section === id ? 'page' : undefined}>${label}</a>`,
        )}
      </nav>
      ${(signedIn || session.admin()) && html`<button type="button" class="secondary" onClick=${signOut}>Sign out</button>`}
    </header>
    <main id="main" tabindex="-1">${body}</main>`;
}

render(html`<${App} />`, document.getElementById('app')!);
