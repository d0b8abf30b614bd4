/**
 * `GET /api/jobs/:id/frames`, the web UI's frame list in columns: it says what `frameList`
 * says about every frame (states, workers, attempts, times, errors, progress, tiles), and
 * with `since` only the frames changed after an earlier answer; compressed for clients that
 * accept it. Workers are scripted WebSocket clients, so every frame is in exactly the state
 * the test puts it in.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { WebSocket } from 'ws';
import {
  framesFromColumns,
  frameColumnsSchema,
  numbersOfRuns,
  PROTOCOL_VERSION, UPLOAD_KEY_HEADER,
  runsOf,
  type FarmChange,
  type FrameColumns,
  type JobDetail,
  type RenderAssignment,
  type SceneInfo,
  type ServerToWorker,
  type WorkerMessage,
} from '../src/protocol/index.ts';
import { FrameChangeLog } from '../src/farm/index.ts';
import { fakeBlend } from '../testkit/api.ts';
import { fakeScene, resultUpload, TINY_PNG } from '../testkit/fakes.ts';
import { startTestFarm, submitBlend, type TestFarm } from '../testkit/farm.ts';

type FrameOf = Extract<FarmChange, { type: 'frame' }>['frame'];

/** A worker that does exactly what the test says, and answers probes with `scene`. */
class ScriptedWorker {
  id = '';
  uploadKey = '';
  private readonly inbox: ServerToWorker[] = [];
  private wake: () => void = () => {};

  private constructor(
    private readonly farm: TestFarm,
    private readonly socket: WebSocket,
    private readonly scene: () => SceneInfo,
  ) {}

  static async connect(farm: TestFarm, name: string, scene: () => SceneInfo): Promise<ScriptedWorker> {
    const socket = new WebSocket(`ws://127.0.0.1:${farm.server.wsPort}`);
    const worker = new ScriptedWorker(farm, socket, scene);
    socket.on('message', (data) => worker.receive(JSON.parse(String(data)) as ServerToWorker));
    await new Promise((resolve) => socket.once('open', resolve));
    worker.send({ type: 'hello', role: 'worker', protocol: PROTOCOL_VERSION, token: farm.server.tokens.worker!, name, host: 'scripted', threads: 1, blenderVersion: '3.4.1', blenders: [], allowScripts: false, tags: [], holding: [] });
    const welcome = await worker.next('welcome');
    worker.id = welcome.workerId;
    worker.uploadKey = welcome.uploadKey;
    return worker;
  }

  send(message: WorkerMessage): void {
    this.socket.send(JSON.stringify(message));
  }

  /** Says `ready` and waits for the frame (or tile) the farm hands out. */
  async take(): Promise<RenderAssignment> {
    this.send({ type: 'ready' });
    return this.next('render');
  }

  async upload(work: RenderAssignment, renderMs: number): Promise<void> {
    const tile = work.tile ? `/tiles/${work.tile.index}` : '';
    const { body, contentType } = await resultUpload(TINY_PNG, { manifest: { renderMs } });
    const response = await fetch(`${this.farm.server.httpUrl}/api/worker/jobs/${work.jobId}/frames/${work.frame}${tile}`, {
      method: 'PUT',
      body: new Uint8Array(body),
      headers: {
        authorization: `Bearer ${this.farm.server.tokens.worker!}`,
        'content-type': contentType,
        [UPLOAD_KEY_HEADER]: this.uploadKey,
      },
    });
    assert.deepEqual(await response.json(), { accepted: true });
  }

  close(): void {
    this.socket.terminate();
  }

  private receive(message: ServerToWorker): void {
    if (message.type === 'probe') this.send({ type: 'probe_result', jobId: message.jobId, scene: this.scene() });
    else this.inbox.push(message);
    this.wake();
  }

  private async next<T extends ServerToWorker['type']>(type: T): Promise<Extract<ServerToWorker, { type: T }>> {
    for (;;) {
      const i = this.inbox.findIndex((m) => m.type === type);
      if (i >= 0) return this.inbox.splice(i, 1)[0] as Extract<ServerToWorker, { type: T }>;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

describe('the frame list in columns (GET /api/jobs/:id/frames)', () => {
  let farm: TestFarm;
  let a: ScriptedWorker;
  let b: ScriptedWorker;
  let scene = fakeScene(1, 12);
  let jobId = '';
  /** Frame 4 of the first job, which worker b keeps rendering. */
  let heldByB: RenderAssignment;

  const get = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${farm.server.httpUrl}${path}`);
    assert.equal(response.status, 200, path);
    return (await response.json()) as T;
  };
  /** The answer's bytes as sent (fetch would decompress them) and its Content-Encoding. */
  const rawGet = (path: string, headers: Record<string, string>) =>
    new Promise<{ body: Buffer; encoding: string | undefined }>((resolve, reject) => {
      http.get(`${farm.server.httpUrl}${path}`, { headers }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ body: Buffer.concat(chunks), encoding: response.headers['content-encoding'] }));
      }).on('error', reject);
    });
  const columnsOf = async (jobId: string, since?: string) =>
    frameColumnsSchema.parse(await get(`/api/jobs/${jobId}/frames${since ? `?since=${encodeURIComponent(since)}` : ''}`));
  /** Waits until the job's frame list satisfies `done`, and returns it. */
  const frameListWhen = async (jobId: string, done: (detail: JobDetail) => boolean): Promise<JobDetail> => {
    for (let tries = 0; ; tries++) {
      const detail = await get<JobDetail>(`/api/jobs/${jobId}`);
      if (done(detail)) return detail;
      assert.ok(tries < 200, `the frame list never got there: ${JSON.stringify(detail.frameList.slice(0, 5))}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };
  const submit = async (fields: Record<string, string>) => {
    const { status, body } = await submitBlend(farm.server.httpUrl, new Blob([new Uint8Array(fakeBlend())]), fields);
    assert.equal(status, 201);
    await frameListWhen(body.id, (detail) => detail.state === 'queued' || detail.state === 'rendering');
    return body.id as string;
  };
  /** The same frames, job and all, as `GET /api/jobs/:id` says. */
  const assertSameAsFrameList = (columns: FrameColumns, detail: JobDetail) => {
    const { frameList, ...job } = detail;
    assert.deepEqual(framesFromColumns(columns), frameList);
    assert.deepEqual(columns.job, job);
  };

  before(async () => {
    farm = await startTestFarm({ server: { frame_retries: 0, tail_duplicates: false } });
    a = await ScriptedWorker.connect(farm, 'a', () => scene);
    b = await ScriptedWorker.connect(farm, 'b', () => scene);
  });
  after(async () => {
    a?.close();
    b?.close();
    await farm?.close();
  });

  it('encodes frame numbers as runs of equal steps', () => {
    for (const numbers of [[], [7], [1, 2, 3, 4], [-3, -1, 1, 3, 4, 5, 9], [10, 20, 21]]) {
      assert.deepEqual(numbersOfRuns(runsOf(numbers)), numbers);
    }
    assert.deepEqual(runsOf([1, 2, 3, 4]), [[1, 4, 1]]);
    assert.deepEqual(runsOf([0, 5, 10, 15, 16]), [[0, 4, 5], [16, 1, 1]]);
  });

  it('remembers which frames changed for about a minute of a busy farm, and says when it cannot tell', () => {
    const log = new FrameChangeLog();
    const frameChange = (jobId: string, number: number) => ({ type: 'frame' as const, frame: { jobId, number } as FrameOf });
    const start = log.cursor();
    log.record(frameChange('aaaaaaaa', 5));
    log.record({ type: 'job_removed', jobId: 'bbbbbbbb' });
    log.record(frameChange('bbbbbbbb', 7));
    log.record(frameChange('aaaaaaaa', 2));
    log.record(frameChange('aaaaaaaa', 5));
    assert.deepEqual(log.changedSince('aaaaaaaa', start), [2, 5]);
    assert.deepEqual(log.changedSince('aaaaaaaa', log.cursor()), []);
    for (let i = 0; i < 70_000; i++) log.record(frameChange('bbbbbbbb', i));
    assert.equal(log.changedSince('aaaaaaaa', start), null, 'forgotten: too long ago');
    assert.equal(log.changedSince('aaaaaaaa', new FrameChangeLog().cursor()), null, 'another log (another server run)');
  });

  it('says what frameList says: states, workers, attempts, render times, errors and progress', async () => {
    jobId = await submit({ tiles: 'off', order: 'sequential' }); // frames in the order the comments below say
    const rendering = await a.take(); // frame 1: rendering at 40 %
    a.send({ type: 'progress', jobId, frame: rendering.frame, percent: 40 });
    const failing = await b.take(); // frame 2: failed for good (no retries)
    b.send({ type: 'frame_failed', jobId, frame: failing.frame, error: 'out of memory', log: '', reason: 'render' });
    const done = await b.take(); // frame 3: done
    await b.upload(done, 1234);
    heldByB = await b.take(); // frame 4: rendering, no progress yet
    const detail = await frameListWhen(jobId, (d) => d.frameList[0]!.progress === 40 && d.frameList[2]!.state === 'done' && d.frameList[3]!.state === 'rendering');
    assert.deepEqual(detail.frameList.slice(0, 5).map((f) => f.state), ['rendering', 'failed', 'done', 'rendering', 'queued']);

    const columns = await columnsOf(jobId);
    assertSameAsFrameList(columns, detail);
    assert.equal(columns.partial, false);
    assert.deepEqual(columns.runs, [[1, 12, 1]]);
    assert.equal(columns.states, 'rfdrqqqqqqqq');
    assert.deepEqual(columns.workerIds.sort(), [a.id, b.id].sort());
    assert.deepEqual(columns.errors, [[1, 'out of memory']]);
    assert.deepEqual(columns.progress, [[0, 40]]);
    assert.deepEqual(columns.tiles, []);
  });

  it('answers `since` with only the frames changed after it; an unknown cursor gets every frame', async () => {
    const before = await columnsOf(jobId);
    const unchanged = await columnsOf(jobId, before.cursor);
    assert.equal(unchanged.partial, true);
    assert.deepEqual(unchanged.runs, []);

    // Progress alone does not count as a change (it reaches pages live, at most a second
    // later): the log keeps state changes, so it tells about a longer time of a busy farm.
    a.send({ type: 'progress', jobId, frame: 1, percent: 80 });
    await b.upload(heldByB, 2000);
    const detail = await frameListWhen(jobId, (d) => d.frameList[0]!.progress === 80 && d.frameList[3]!.state === 'done');
    const changed = await columnsOf(jobId, before.cursor);
    assert.equal(changed.partial, true);
    assert.deepEqual(numbersOfRuns(changed.runs), [4]);
    assert.equal(changed.states, 'd');
    assert.deepEqual(changed.progress, []);
    assert.deepEqual(framesFromColumns(changed), [detail.frameList[3]]);
    assert.notEqual(changed.cursor, before.cursor);
    assert.deepEqual((await columnsOf(jobId)).progress, [[0, 80]], 'every frame: the progress as it is now');

    for (const unknown of ['0123456789ab.5', 'not a cursor', `${before.cursor.split('.')[0]}.99999999`]) {
      const whole = await columnsOf(jobId, unknown);
      assert.equal(whole.partial, false, unknown);
      assertSameAsFrameList(whole, detail);
    }
    const cancelled = await fetch(`${farm.server.httpUrl}/api/jobs/${jobId}/cancel`, { method: 'POST', headers: { 'x-archenland-client': 'test' } });
    assert.equal(cancelled.status, 200);
  });

  it('carries the tiles of a split frame and their progress', async () => {
    scene = fakeScene(1, 2, { resolutionX: 256, resolutionY: 256 });
    const tiledJobId = await submit({ tiles: '2x2' });
    const first = await a.take();
    assert.ok(first.tile, 'the frame is split');
    const announced = new Promise<FarmChange>((resolve) => farm.server.farm.once('event', resolve));
    a.send({ type: 'progress', jobId: tiledJobId, frame: first.frame, tile: first.tile.index, percent: 50 });
    // Observers hear the tile's percent and the frame's: only the server knows the other tiles.
    assert.deepEqual(await announced, { type: 'progress', workerId: a.id, jobId: tiledJobId, frame: first.frame, tile: first.tile.index, percent: 50, frameProgress: 12.5 });
    const second = await b.take();
    await b.upload(second, 500);
    const detail = await frameListWhen(tiledJobId, (d) => d.frameList[0]!.tiles?.states.filter((s) => s === 'done').length === 1 && d.frameList[0]!.progress > 25);
    const columns = await columnsOf(tiledJobId);
    assertSameAsFrameList(columns, detail);
    assert.deepEqual(columns.tiles.map(([i, tiles]) => [i, tiles.grid]), [[0, { cols: 2, rows: 2 }]]);
    assert.deepEqual(columns.progress, [[0, 37.5]]); // (a done tile + one at 50 %) / 4 tiles
  });

  it('is sent compressed to a client that accepts it (Brotli, else gzip), and plain to one that does not', async () => {
    scene = fakeScene(1, 5000);
    const { status, body } = await submitBlend(farm.server.httpUrl, new Blob([new Uint8Array(fakeBlend())]), { hold: 'true' });
    assert.equal(status, 201);
    await frameListWhen(body.id, (detail) => detail.state === 'paused');
    const path = `/api/jobs/${body.id}/frames`;
    const plain = await rawGet(path, {});
    assert.equal(plain.encoding, undefined);
    const columns = frameColumnsSchema.parse(JSON.parse(plain.body.toString()));
    assert.deepEqual(numbersOfRuns(columns.runs).length, 5000);
    const decode = { br: brotliDecompressSync, gzip: gunzipSync };
    for (const [accepts, expected] of [['gzip, deflate, br, zstd', 'br'], ['gzip', 'gzip'], ['identity', undefined]] as const) {
      const answer = await rawGet(path, { 'accept-encoding': accepts });
      assert.equal(answer.encoding, expected, accepts);
      const json = expected ? decode[expected](answer.body) : answer.body;
      if (expected) assert.ok(answer.body.length < plain.body.length / 4, `${answer.body.length} bytes ${expected} for ${plain.body.length}`);
      assert.deepEqual({ ...JSON.parse(json.toString()), cursor: '' }, { ...columns, cursor: '' }, accepts);
    }
    // A small answer is not worth it, and other answers are never compressed.
    assert.equal((await rawGet(`/api/jobs/${jobId}/frames`, { 'accept-encoding': 'gzip, br' })).encoding, undefined);
    assert.equal((await rawGet(`/api/jobs`, { 'accept-encoding': 'gzip, br' })).encoding, undefined);
  });
});
