import { render } from 'preact';
import { App } from './app.tsx';
import { whenUnauthorized } from './api.ts';
import { farm } from './store.ts';
import './styles.css';

whenUnauthorized(() => farm.setAuth('login'));

// A file dropped outside the drop zone must not make the browser leave the page to open it.
for (const type of ['dragover', 'drop'] as const) {
  window.addEventListener(type, (event) => {
    if (!(event.target instanceof Element && event.target.closest('.dropzone'))) event.preventDefault();
  });
}

render(<App />, document.getElementById('app')!);
void farm.start();
