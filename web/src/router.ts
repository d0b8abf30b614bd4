import { useEffect, useState } from 'preact/hooks';

export type Route = { page: 'queue' } | { page: 'job'; id: string } | { page: 'workers' } | { page: 'notfound'; hash: string };

/** `#/`, `#/jobs/:id` (the Blender add-on links here) and `#/workers`. */
export function parseHash(hash: string): Route {
  const path = hash.replace(/^#/, '') || '/';
  if (path === '/' || path === '/jobs' || path === '/jobs/') return { page: 'queue' };
  if (path === '/workers' || path === '/workers/') return { page: 'workers' };
  const job = /^\/jobs\/([a-z0-9]{6,40})\/?$/.exec(path);
  if (job) return { page: 'job', id: job[1]! };
  return { page: 'notfound', hash: path };
}

export const href = {
  queue: '#/',
  workers: '#/workers',
  job: (id: string) => `#/jobs/${id}`,
};

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(window.location.hash));
  useEffect(() => {
    const update = () => setRoute(parseHash(window.location.hash));
    window.addEventListener('hashchange', update);
    return () => window.removeEventListener('hashchange', update);
  }, []);
  return route;
}
