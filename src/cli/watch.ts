import { WebSocket } from 'ws';
import { farmEventSchema, parseMessage, PROTOCOL_VERSION, type Job } from '../protocol/index.ts';
import type { ApiClient } from './client.ts';

const finished = new Set(['completed', 'failed', 'cancelled']);

/**
 * Follows one job over the server's live event stream (no polling) until it ends, and
 * resolves with its final state. The job is read once after subscribing, so an end that
 * happened before the subscription is not missed.
 */
export async function watchJob(client: ApiClient, jobId: string, onUpdate: (job: Job) => void): Promise<Job> {
  const info = await client.get<{ wsPort: number }>('/api/info');
  const base = new URL(client.baseUrl);
  const socket = new WebSocket(`ws://${base.hostname.includes(':') ? `[${base.hostname}]` : base.hostname}:${info.wsPort}`);
  return new Promise<Job>((resolve, reject) => {
    const done = (job: Job) => {
      socket.close();
      resolve(job);
    };
    const update = (job: Job) => {
      onUpdate(job);
      if (finished.has(job.state)) done(job);
    };
    socket.on('open', () => socket.send(JSON.stringify({ type: 'observe', protocol: PROTOCOL_VERSION, token: client.token })));
    socket.on('message', (data) => {
      const parsed = parseMessage(farmEventSchema, data.toString());
      if (!parsed.ok) return;
      const event = parsed.message;
      if (event.type === 'welcome') client.get<Job>(`/api/jobs/${jobId}`).then(update, reject);
      else if (event.type === 'error') reject(new Error(event.message));
      else {
        for (const change of event.changes) if (change.type === 'job' && change.job.id === jobId) update(change.job);
      }
    });
    socket.on('error', (error) => reject(new Error(`lost the live connection to the server: ${error.message}`)));
    socket.on('close', () => reject(new Error('the server closed the live connection')));
  });
}
