import { WebSocket } from 'ws';
import { apiPath, isHeldForMissingFiles, parseFarmEvent, PROTOCOL_VERSION, type Job } from '../protocol/index.ts';
import { explainTlsError } from '../util/tls-client.ts';
import type { ApiClient } from './client.ts';

const finished = new Set(['completed', 'failed', 'cancelled']);

/**
 * Follows one job over the server's live event stream (no polling) until it ends, or its
 * preflight holds it for files the project lacks, and resolves with its last state. The job is read once after subscribing, so an end that
 * happened before the subscription is not missed.
 */
export async function watchJob(client: ApiClient, jobId: string, onUpdate: (job: Job) => void): Promise<Job> {
  const info = await client.get<{ wsPort: number; tls?: boolean }>(apiPath('info'));
  const base = new URL(client.baseUrl);
  // The server says whether its WebSocket port speaks TLS; one from before `tls` was in
  // /api/info did when its API did.
  const secure = info.tls ?? base.protocol === 'https:';
  // URL.hostname keeps the brackets of an IPv6 address.
  const url = `${secure ? 'wss' : 'ws'}://${base.hostname}:${info.wsPort}`;
  const socket = new WebSocket(url, client.transport.webSocketOptions(url));
  return new Promise<Job>((resolve, reject) => {
    const done = (job: Job) => {
      socket.close();
      resolve(job);
    };
    const update = (job: Job) => {
      onUpdate(job);
      if (finished.has(job.state) || isHeldForMissingFiles(job)) done(job);
    };
    socket.on('open', () => socket.send(JSON.stringify({ type: 'observe', protocol: PROTOCOL_VERSION, token: client.token })));
    socket.on('message', (data) => {
      // Changes it does not follow (progress, frames, or a kind newer than this CLI) are passed over.
      const parsed = parseFarmEvent(data.toString());
      if (!parsed.ok) return;
      const event = parsed.event;
      if (event.type === 'welcome') client.get<Job>(apiPath('getJob', { id: jobId })).then(update, reject);
      else if (event.type === 'error') reject(new Error(event.message));
      else {
        for (const change of event.changes) if (change.type === 'job' && change.job.id === jobId) update(change.job);
      }
    });
    socket.on('error', (error) => reject(new Error(`lost the live connection to the server: ${explainTlsError(error).message}`)));
    socket.on('close', () => reject(new Error('the server closed the live connection')));
  });
}
