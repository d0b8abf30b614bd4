import { render } from 'preact';
import { App } from './app.tsx';
import { whenUnauthorized } from './api.ts';
import { parseHash } from './router.ts';
import { farm } from './store.ts';
import './styles/index.css';

whenUnauthorized(() => farm.setAuth('login'));

// A file dropped outside the drop zone must not make the browser leave the page to open it.
for (const type of ['dragover', 'drop'] as const) {
  window.addEventListener(type, (event) => {
    if (!(event.target instanceof Element && event.target.closest('.dropzone'))) event.preventDefault();
  });
}

// A job page shows its frames without waiting for the session check or the live connection
// (index.html has already asked for them; api.ts takes that answer).
const route = parseHash(window.location.hash);
if (route.page === 'job') farm.openJob(route.id);

render(<App />, document.getElementById('app')!);
void farm.start();
