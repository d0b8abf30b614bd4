/**
 * Progress reaches observers as a slim `progress` change, coalesced per worker and sent at
 * most once a second, instead of the worker's and the frame's whole views on every report;
 * state changes still go out in the 200 ms batches. Clients read batches leniently: a
 * change they do not know is passed over, not the whole batch. Scripted workers (no
 * Blender) put every frame in the state the test says.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { parseFarmEvent, PROTOCOL_VERSION, type FarmChange, type FarmEvent, type Job, type Worker } from '../src/protocol/index.ts';
import { ObserverBatches } from '../src/edge/worker-socket.ts';
import { ApiClient } from '../src/cli/client.ts';
import { watchJob } from '../src/cli/watch.ts';
import { fakeBlend } from '../testkit/api.ts';
import { TINY_PNG } from '../testkit/fakes.ts';
import { startTestFarm, submitBlend, type TestFarm } from '../testkit/farm.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';

const progress = (workerId: string, frame: number, percent: number): FarmChange => ({ type: 'progress', workerId, jobId: 'job00001', frame, percent, frameProgress: percent });
const workerView = (id: string) => ({ type: 'worker', worker: { id } as Worker }) as FarmChange;
const jobView = (id: string) => ({ type: 'job', job: { id } as Job }) as FarmChange;

describe('observer batches (one per observer connection)', () => {
  it('keeps the latest progress of each worker, and sends it at most once a second', () => {
    const batches = new ObserverBatches(0);
    batches.add(progress('worker01', 1, 10));
    batches.add(progress('worker02', 2, 15));
    batches.add(progress('worker01', 1, 20));
    batches.add(jobView('job00001'));
    assert.deepEqual(batches.take(200), [jobView('job00001')], 'a state change goes out at once; progress waits');
    assert.deepEqual(batches.take(400), []);
    batches.add(progress('worker01', 1, 30));
    assert.deepEqual(batches.take(1000), [progress('worker02', 2, 15), progress('worker01', 1, 30)], 'latest per worker, in the order of their latest change');
    batches.add(progress('worker01', 1, 40));
    assert.deepEqual(batches.take(1200), [], 'a second from the last progress sent');
    assert.deepEqual(batches.take(2000), [progress('worker01', 1, 40)]);
  });

  it("drops a worker's progress once its whole view (which carries its percent) is sent", () => {
    const batches = new ObserverBatches(0);
    batches.add(progress('worker01', 1, 10));
    batches.add(progress('worker02', 2, 10));
    batches.add(workerView('worker01'));
    assert.deepEqual(batches.take(1000), [workerView('worker01'), progress('worker02', 2, 10)]);
  });

  it('puts a change again after the others when the same thing changes again', () => {
    const batches = new ObserverBatches(0);
    batches.add(jobView('job00001'));
    batches.add(workerView('worker01'));
    batches.add(jobView('job00001'));
    assert.deepEqual(batches.take(100), [workerView('worker01'), jobView('job00001')]);
  });
});

describe('reading observer messages (web UI and CLI)', () => {
  it('passes over a change of a kind it does not know, and keeps the rest of the batch', () => {
    const raw = JSON.stringify({ type: 'batch', changes: [{ type: 'weather', sky: 'blue' }, progress('worker01', 3, 50), { type: 'job_removed', jobId: 'job00001' }] });
    const parsed = parseFarmEvent(raw);
    assert.ok(parsed.ok);
    assert.equal(parsed.skipped, 1);
    assert.deepEqual(parsed.event, { type: 'batch', changes: [progress('worker01', 3, 50), { type: 'job_removed', jobId: 'job00001' }] });
  });

  it('reads a batch larger than any worker message (a busy farm sends them)', () => {
    const changes = Array.from({ length: 5000 }, (_, i) => progress(`worker${String(i).padStart(4, '0')}`, i, 50));
    const raw = JSON.stringify({ type: 'batch', changes });
    assert.ok(raw.length > 256 * 1024);
    const parsed = parseFarmEvent(raw);
    assert.ok(parsed.ok && parsed.event.type === 'batch' && parsed.event.changes.length === 5000);
  });

  it('refuses what is not an observer message', () => {
    assert.equal(parseFarmEvent('not json').ok, false);
    assert.equal(parseFarmEvent(JSON.stringify({ type: 'batch' })).ok, false);
  });
});

describe('progress on a real server (scripted workers)', () => {
  let farm: TestFarm;
  let worker: ScriptedWorker;
  let observer: WebSocket;
  /** Every change the farm announced, and every change the observer connection received, with when. */
  const announced: FarmChange[] = [];
  const received: Array<{ at: number; change: FarmChange }> = [];

  const submit = async (): Promise<string> => {
    const { status, body } = await submitBlend(farm.server.httpUrl, new Blob([new Uint8Array(fakeBlend())]));
    assert.equal(status, 201);
    await until('the job is probed', async () => ['queued', 'rendering'].includes((await jobOf(body.id)).state));
    return body.id as string;
  };
  const jobOf = async (id: string) => (await (await fetch(`${farm.server.httpUrl}/api/jobs/${id}`)).json()) as Job & { frameList: Array<{ progress: number }> };
  const until = async (what: string, done: () => boolean | Promise<boolean>, ms = 5000) => {
    for (const start = Date.now(); !(await done()); await new Promise((resolve) => setTimeout(resolve, 20))) {
      assert.ok(Date.now() - start < ms, `${what} within ${ms} ms`);
    }
  };

  before(async () => {
    farm = await startTestFarm();
    farm.server.farm.on('event', (change) => announced.push(change));
    observer = new WebSocket(`ws://127.0.0.1:${farm.server.wsPort}`);
    await new Promise((resolve) => observer.once('open', resolve));
    observer.on('message', (data) => {
      const event = JSON.parse(String(data)) as FarmEvent;
      if (event.type === 'batch') for (const change of event.changes) received.push({ at: Date.now(), change });
    });
    observer.send(JSON.stringify({ type: 'observe', protocol: PROTOCOL_VERSION }));
    worker = await ScriptedWorker.connect(farm, { name: 'slim' });
  });
  after(async () => {
    observer?.close();
    await farm?.close();
  });

  it('announces a progress report as one slim change, not the worker and frame views', async () => {
    const jobId = await submit();
    worker.send({ type: 'ready' });
    const work = await worker.next('render');
    await until('the frame is rendering', () => announced.some((c) => c.type === 'frame' && c.frame.jobId === jobId && c.frame.state === 'rendering'));
    await new Promise((resolve) => setTimeout(resolve, 200)); // the views of the frame's start are out
    const from = announced.length;
    for (const percent of [10, 20, 30]) worker.send({ type: 'progress', jobId, frame: work.frame, percent });
    await until('three progress changes', () => announced.slice(from).filter((c) => c.type === 'progress').length === 3);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(
      announced.slice(from),
      [10, 20, 30].map((percent) => ({ type: 'progress', workerId: worker.workerId, jobId, frame: work.frame, percent, frameProgress: percent })),
    );

    // The observer gets the latest one, and the views say the same when asked.
    await until('the observer hears 30 %', () => received.some(({ change }) => change.type === 'progress' && change.percent === 30), 3000);
    assert.equal(received.filter(({ change }) => change.type === 'progress' && change.percent === 10).length, 0, 'coalesced: 10 % and 20 % were replaced before the batch went');
    assert.equal((await jobOf(jobId)).frameList[0]!.progress, 30);

    // Done: the whole frame view goes out; a late progress line announces nothing.
    const uploaded = await worker.upload(`/api/worker/jobs/${jobId}/frames/${work.frame}`, TINY_PNG);
    assert.equal(uploaded.status, 200);
    await until('the job completes', async () => (await jobOf(jobId)).state === 'completed');
    const afterDone = announced.length;
    worker.send({ type: 'progress', jobId, frame: work.frame, percent: 99 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(announced.slice(afterDone).filter((c) => c.type === 'progress' || c.type === 'frame'), [], 'a done frame is not announced again');
    await until('the observer hears the frame done', () => received.some(({ change }) => change.type === 'frame' && change.frame.jobId === jobId && change.frame.state === 'done'), 3000);
  });

  it('sends observers progress at most about once a second, state changes at once', async () => {
    const jobId = await submit();
    worker.send({ type: 'ready' });
    const work = await worker.next('render', 1); // its second frame
    const start = received.length;
    // Reports every 50 ms for 2.5 s: 50 reports; about 2-3 progress batches reach the observer.
    for (let percent = 1; percent <= 50; percent++) {
      worker.send({ type: 'progress', jobId, frame: work.frame, percent });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const progressAt = received.slice(start).filter(({ change }) => change.type === 'progress').map(({ at }) => at);
    assert.ok(progressAt.length >= 2 && progressAt.length <= 4, `${progressAt.length} progress changes received for 50 reports`);
    for (let i = 1; i < progressAt.length; i++) assert.ok(progressAt[i]! - progressAt[i - 1]! >= 900, `progress ${progressAt[i]! - progressAt[i - 1]!} ms after the one before`);
    const last = received.filter(({ change }) => change.type === 'progress').at(-1)!.change;
    assert.equal(last.type === 'progress' && last.percent, 50, 'the latest report reaches the observer');
    await worker.upload(`/api/worker/jobs/${jobId}/frames/${work.frame}`, TINY_PNG);
    await until('the job completes', async () => (await jobOf(jobId)).state === 'completed');
  });

  it('`submit --wait` follows its job to the end through progress and changes it does not know', { timeout: 20_000 }, async () => {
    const jobId = await submit();
    const client = new ApiClient(farm.server.httpUrl, farm.server.tokens.user ?? undefined);
    const states: string[] = [];
    const watched = watchJob(client, jobId, (job) => states.push(job.state));
    // Once the job completes, a change of a kind this CLI does not know, and large (older CLIs
    // dropped a batch over 256 KB), goes out in the same batch as the job's last view.
    const unknown = (change: FarmChange) => {
      if (change.type === 'job' && change.job.id === jobId && change.job.state === 'completed') {
        farm.server.farm.emit('event', { type: 'weather', sky: 'x'.repeat(300 * 1024) } as unknown as FarmChange);
      }
    };
    farm.server.farm.on('event', unknown);
    try {
      worker.send({ type: 'ready' });
      const work = await worker.next('render', 2); // its third frame
      for (const percent of [25, 75]) worker.send({ type: 'progress', jobId, frame: work.frame, percent });
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await worker.upload(`/api/worker/jobs/${jobId}/frames/${work.frame}`, TINY_PNG);
      const final = await watched;
      assert.equal(final.state, 'completed');
      assert.equal(states.at(-1), 'completed');
    } finally {
      farm.server.farm.off('event', unknown);
    }
  });
});
