/**
 * A trivial HTTP server for reference throughput, run as a child process (like the farm's
 * server). It reports its port over IPC: {type:'ready', port}.
 *   PUT/POST /store  the body is hashed (SHA-256) and written to a temp file, which is then
 *                    removed: the least a server that keeps uploads must do
 *   PUT/POST other   the body is read and discarded
 *   GET /file        streams the file named in SINK_FILE
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const file = process.env.SINK_FILE;
let next = 0;
const server = http.createServer((request, response) => {
  if (request.method === 'GET' && request.url === '/file' && file) {
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(file).size });
    createReadStream(file).pipe(response);
    return;
  }
  let bytes = 0;
  const answer = (extra: Record<string, unknown> = {}) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ bytes, ...extra }));
  };
  if (request.url === '/store') {
    const temp = path.join(process.env.SINK_DIR ?? os.tmpdir(), `sink-${process.pid}-${next++}`);
    const hash = createHash('sha256');
    const out = createWriteStream(temp);
    request.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    request.pipe(out);
    out.on('finish', () => {
      const sha256 = hash.digest('hex');
      void rm(temp, { force: true }).then(() => answer({ sha256 }));
    });
    return;
  }
  request.on('data', (chunk: Buffer) => (bytes += chunk.length));
  request.on('end', () => answer());
});
server.listen(0, '127.0.0.1', () => {
  process.send?.({ type: 'ready', port: (server.address() as { port: number }).port });
});
process.on('disconnect', () => process.exit(0));
