/**
 * Saving a download to the cache (src/worker/verified-download.ts, hashing-file-sink.ts):
 * every byte hashed once as it arrives, written in batches of about 1 MiB, and the file
 * under its final name only when the content has the SHA-256 asked for.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, it } from 'node:test';
import { HashingFileSink, WRITE_BATCH_BYTES } from '../src/worker/hashing-file-sink.ts';
import { saveVerified, WrongContentError } from '../src/worker/verified-download.ts';

const KiB = 1024;
const total = (buffers: Buffer[]) => buffers.reduce((sum, buffer) => sum + buffer.length, 0);
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
/** A body that arrives in 64 KiB chunks, as a socket delivers it. */
const chunked = (data: Buffer, size = 64 * KiB) => Readable.from(Array.from({ length: Math.ceil(data.length / size) }, (_, i) => data.subarray(i * size, (i + 1) * size)));

describe('saving a download, verified', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'archenland-verified-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes 64 KiB chunks in batches of about 1 MiB, hashing each byte once, and counts what it saw', async () => {
    const data = randomBytes(3 * WRITE_BATCH_BYTES + 100 * KiB);
    const writes: number[] = [];
    class Counted extends HashingFileSink {
      protected override writev(buffers: Buffer[]): Promise<number> {
        writes.push(total(buffers));
        return super.writev(buffers);
      }
    }
    const hash = createHash('sha256');
    let seen = 0;
    const sink = new Counted(path.join(dir, 'batched'), hash, (bytes) => (seen += bytes));
    await pipeline(chunked(data), sink);
    assert.deepEqual(writes, [WRITE_BATCH_BYTES, WRITE_BATCH_BYTES, WRITE_BATCH_BYTES, 100 * KiB], 'three full batches, then the rest at the end');
    assert.equal(hash.digest('hex'), sha256(data));
    assert.equal(sink.bytes, data.length);
    assert.equal(seen, data.length);
    assert.deepEqual(readFileSync(path.join(dir, 'batched')), data);
  });

  it('goes on after a short write, and fails on a write that writes nothing', async () => {
    const data = randomBytes(WRITE_BATCH_BYTES + 7);
    // At most 100 000 bytes per call, taken off the front of the batch.
    class Short extends HashingFileSink {
      protected override writev(buffers: Buffer[]): Promise<number> {
        return super.writev([Buffer.concat(buffers).subarray(0, Math.min(100_000, total(buffers)))]);
      }
    }
    await pipeline(chunked(data, 3000), new Short(path.join(dir, 'short'), createHash('sha256')));
    assert.deepEqual(readFileSync(path.join(dir, 'short')), data);

    class Stuck extends HashingFileSink {
      protected override writev(): Promise<number> {
        return Promise.resolve(0);
      }
    }
    await assert.rejects(pipeline(chunked(data), new Stuck(path.join(dir, 'stuck'), createHash('sha256'))), /no bytes written/);
  });

  it('creates a new file only: an existing one is never written over', async () => {
    const existing = path.join(dir, 'short');
    await assert.rejects(pipeline(chunked(Buffer.from('x')), new HashingFileSink(existing, createHash('sha256'))), { code: 'EEXIST' });
    assert.equal(readFileSync(existing).length, WRITE_BATCH_BYTES + 7);
  });

  it('keeps a file only under its final name, and only with the SHA-256 asked for', async () => {
    const data = randomBytes(2 * WRITE_BATCH_BYTES + 1);
    const target = path.join(dir, 'good');
    assert.equal(await saveVerified(chunked(data), sha256(data), target, 'the test file'), data.length);
    assert.deepEqual(readFileSync(target), data);

    const wrong = path.join(dir, 'wrong');
    await assert.rejects(saveVerified(chunked(data), sha256(Buffer.from('other')), wrong, 'the test file'), WrongContentError);
    assert.equal(existsSync(wrong), false, 'wrong content is not kept');

    // A body that fails half way (here before the file is even created): nothing kept, no temp file left behind.
    for (const delay of [0, 20]) {
      const failing = new Readable({ read() {} });
      failing.push(data.subarray(0, WRITE_BATCH_BYTES + 10));
      setTimeout(() => failing.destroy(new Error('the peer hung up')), delay);
      await assert.rejects(saveVerified(failing, sha256(data), path.join(dir, 'half'), 'the test file'), /hung up/);
    }
    assert.deepEqual(readdirSync(dir).sort(), ['batched', 'good', 'short', 'stuck']);
  });
});
