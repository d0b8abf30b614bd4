import assert from 'node:assert/strict';
import { existsSync, linkSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { trimCache } from '../src/worker/cache-budget.ts';

describe("the worker's cache budget (cache_max_gb)", () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'archenland-cache-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  /** A cached file of `kb` KiB last used `ageS` seconds ago. */
  const cached = (relative: string, kb: number, ageS: number) => {
    const file = path.join(root, relative);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, Buffer.alloc(kb * 1024));
    const when = new Date(Date.now() - ageS * 1000);
    utimesSync(file, when, when);
    return file;
  };

  it('removes the least recently used files until under budget, never those of the job at hand', async () => {
    const current = cached('blends/current.blend', 100, 500); // old, but the job being rendered
    const oldBlend = cached('blends/old.blend', 100, 400);
    const oldTexture = cached('files/aa/old-texture', 100, 300);
    const usedTexture = cached('files/bb/used-texture', 100, 200); // linked from the current tree
    const recent = cached('files/cc/recent', 100, 10);
    const tree = path.join(root, 'projects', 'current');
    mkdirSync(path.join(tree, 'tex'), { recursive: true });
    linkSync(usedTexture, path.join(tree, 'tex', 'used.png'));
    const otherTree = path.join(root, 'projects', 'other');
    mkdirSync(otherTree, { recursive: true });
    linkSync(recent, path.join(otherTree, 'recent.png'));

    const trimmed = await trimCache(root, 300 * 1024, { blend: current, tree });
    assert.deepEqual(trimmed, { files: 2, bytes: 200 * 1024 });
    assert.equal(existsSync(oldBlend), false, 'the oldest unused file went first');
    assert.equal(existsSync(oldTexture), false);
    for (const kept of [current, usedTexture, recent, path.join(tree, 'tex', 'used.png')]) assert.ok(existsSync(kept), kept);
    assert.equal(existsSync(otherTree), false, 'trees of other jobs are only links: they go');
  });

  it('does nothing under budget or without a limit', async () => {
    const blend = cached('blends/a.blend', 10, 1);
    assert.deepEqual(await trimCache(root, 1024 ** 3, { blend }), { files: 0, bytes: 0 });
    assert.deepEqual(await trimCache(root, 0, { blend }), { files: 0, bytes: 0 });
  });
});
