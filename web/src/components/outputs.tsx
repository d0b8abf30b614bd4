import { useEffect, useState } from 'preact/hooks';
import type { FramePass, Job } from '../../../src/protocol/index.ts';
import { api, urls } from '../api.ts';

/** What the preflight found in the scene: errors (the job cannot render) first, then warnings. */
export function Problems({ job }: { job: Job }) {
  const problems = job.scene?.problems ?? [];
  if (problems.length === 0) return null;
  return (
    <section class="panel problems" aria-label="Preflight" data-testid="problems">
      <h2>Preflight</h2>
      <ul>
        {problems.map((problem, index) => (
          <li key={index} data-severity={problem.severity}>
            <span class="badge" data-state={problem.severity === 'error' ? 'failed' : 'paused'}>
              {problem.severity}
            </span>{' '}
            {problem.message}
            {problem.path && !problem.message.includes(problem.path) && <code>{problem.path}</code>}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** Images a browser shows as they are; other passes (EXR) are offered for download only. */
const SHOWN = /\.(png|jpe?g|webp)$/i;

/** The compositor's File Output passes of a finished frame: previews and downloads. */
export function FramePasses({ job, frame }: { job: Job; frame: number }) {
  const [passes, setPasses] = useState<FramePass[] | null>(null);
  useEffect(() => {
    let live = true;
    api.framePasses(job.id, frame).then(
      (list) => live && setPasses(list),
      () => live && setPasses([]),
    );
    return () => {
      live = false;
    };
  }, [job.id, frame]);
  if (!passes || passes.length === 0) return null;
  return (
    <section class="passes" aria-label="Passes" data-testid="frame-passes">
      <h3>Passes</h3>
      <ul>
        {passes.map((pass) => (
          <li key={pass.name}>
            {SHOWN.test(pass.name) && <img src={urls.pass(job.id, frame, pass.name)} alt={pass.name} loading="lazy" />}
            <a href={urls.pass(job.id, frame, pass.name)} download>
              {pass.name}
            </a>
          </li>
        ))}
      </ul>
    </section>
  );
}
