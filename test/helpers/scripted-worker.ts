import WebSocket from 'ws';
import { PROTOCOL_VERSION, UPLOAD_KEY_HEADER, type ServerToWorker } from '../../src/protocol/index.ts';
import { fakeScene, resultUpload } from '../../testkit/fakes.ts';
import type { TestFarm } from '../../testkit/farm.ts';

/**
 * A worker run by the test, speaking the real protocol without Blender: it answers probes
 * with a 200x100 one-frame scene, records what it is sent, and uploads what the test says.
 */
export class ScriptedWorker {
  readonly received: ServerToWorker[] = [];
  workerId = '';
  uploadKey = '';
  private constructor(
    private readonly socket: WebSocket,
    private readonly farm: TestFarm,
  ) {}

  static async connect(farm: TestFarm, options: { name?: string; token?: string; allowScripts?: boolean; workerId?: string; tags?: string[] } = {}): Promise<ScriptedWorker> {
    const socket = new WebSocket(`ws://127.0.0.1:${farm.server.wsPort}`);
    const worker = new ScriptedWorker(socket, farm);
    await new Promise((resolve) => socket.once('open', resolve));
    socket.on('message', (data) => worker.onMessage(JSON.parse(data.toString()) as ServerToWorker));
    worker.send({
      type: 'hello',
      role: 'worker',
      protocol: PROTOCOL_VERSION,
      token: options.token ?? farm.server.tokens.worker,
      name: options.name ?? 'scripted',
      host: 'test',
      threads: 1,
      blenderVersion: '3.4.1',
      allowScripts: options.allowScripts ?? false,
      tags: options.tags ?? [],
      ...(options.workerId ? { workerId: options.workerId } : {}),
      holding: [],
    });
    await worker.next('welcome');
    return worker;
  }

  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  async next<T extends ServerToWorker['type']>(type: T, skip = 0): Promise<Extract<ServerToWorker, { type: T }>> {
    for (let waited = 0; waited < 10_000; waited += 20) {
      const found = this.received.filter((m) => m.type === type);
      if (found.length > skip) return found[skip] as Extract<ServerToWorker, { type: T }>;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`no ${type} message arrived`);
  }

  /** PUTs a result (the image, and passes if given) to a worker upload path, as this worker's connection. */
  async upload(path: string, image: Buffer, headers: Record<string, string> = {}, options: Parameters<typeof resultUpload>[1] = {}) {
    const { body, contentType } = await resultUpload(image, options);
    const response = await fetch(`${this.farm.server.httpUrl}${path}`, {
      method: 'PUT',
      body: new Uint8Array(body),
      headers: {
        authorization: `Bearer ${this.farm.server.tokens.worker}`,
        'content-type': contentType,
        [UPLOAD_KEY_HEADER]: this.uploadKey,
        ...headers,
      },
    });
    return { status: response.status, body: (await response.json()) as { accepted?: boolean; reason?: string; error?: string } };
  }

  private onMessage(message: ServerToWorker): void {
    this.received.push(message);
    if (message.type === 'welcome') {
      this.workerId = message.workerId;
      this.uploadKey = message.uploadKey;
    }
    if (message.type === 'probe') {
      this.send({ type: 'probe_result', jobId: message.jobId, scene: fakeScene(1, 1, { resolutionX: 200, resolutionY: 100 }) });
    }
  }

  close(): void {
    this.socket.close();
  }
}
