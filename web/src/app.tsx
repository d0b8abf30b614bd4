import { useEffect } from 'preact/hooks';
import { ConnectionBanner, Notices } from './components/ui.tsx';
import { JobPage } from './pages/job.tsx';
import { LoginPage } from './pages/login.tsx';
import { QueuePage } from './pages/queue.tsx';
import { WorkersPage } from './pages/workers.tsx';
import { href, useRoute, type Route } from './router.ts';
import { farm, useFarm } from './store.ts';

export function App() {
  useFarm();
  const route = useRoute();
  useDocumentTitle(route);
  if (farm.auth === 'checking') {
    return (
      <main id="main" tabIndex={-1} class="page">
        <p class="muted" role="status">
          Connecting to the farm…
        </p>
      </main>
    );
  }
  if (farm.auth === 'login') return <LoginPage />;
  return (
    <>
      <a class="skip-link" href="#main" onClick={(e) => {
        e.preventDefault();
        document.getElementById('main')?.focus();
      }}>
        Skip to content
      </a>
      <Header route={route} />
      <ConnectionBanner />
      <Notices />
      {route.page === 'queue' && <QueuePage />}
      {route.page === 'job' && <JobPage id={route.id} />}
      {route.page === 'workers' && <WorkersPage />}
      {route.page === 'notfound' && (
        <main id="main" tabIndex={-1} class="page">
          <h1>Page not found</h1>
          <p>
            There is nothing at <code>{route.hash}</code>. <a href={href.queue}>Go to the queue</a>
          </p>
        </main>
      )}
    </>
  );
}

function Header({ route }: { route: Route }) {
  const workers = [...farm.workers.values()];
  const online = workers.filter((w) => w.state !== 'offline').length;
  const rendering = workers.filter((w) => w.state === 'rendering').length;
  const live = farm.live.status === 'open';
  return (
    <header class="topbar">
      <a class="brand" href={href.queue}>
        <img src="./favicon.svg" alt="" width={22} height={22} />
        Archenland
      </a>
      <nav aria-label="Main">
        <a href={href.queue} aria-current={route.page === 'queue' || route.page === 'job' ? 'page' : undefined}>
          Queue
        </a>
        <a href={href.workers} aria-current={route.page === 'workers' ? 'page' : undefined}>
          Workers <span class="nav-count">{farm.loaded ? `${online}/${workers.length}` : ''}</span>
        </a>
      </nav>
      <span class="live" data-live={live ? 'on' : 'off'} title={live ? 'Live updates on' : 'Live updates interrupted'}>
        <span class="dot" aria-hidden="true" />
        <span class="live-text">{live ? (rendering > 0 ? `${rendering} rendering` : 'Live') : 'Offline'}</span>
      </span>
    </header>
  );
}

/** The tab title carries the progress, for a page left open on a second screen. */
function useDocumentTitle(route: Route) {
  const job = route.page === 'job' ? farm.jobs.get(route.id) : undefined;
  const active = [...farm.jobs.values()].filter((j) => j.state === 'rendering');
  let title = 'Archenland';
  if (job) title = `${job.counts.done}/${job.counts.total} · ${job.name} · Archenland`;
  else if (route.page === 'workers') title = 'Workers · Archenland';
  else if (active.length > 0) title = `${active.length} rendering · Archenland`;
  useEffect(() => {
    document.title = title;
  }, [title]);
}
