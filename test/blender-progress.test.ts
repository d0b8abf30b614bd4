import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findBlenderError, parseProgressLine, parseSessionEvent } from '../src/worker/blender/progress.ts';
import { parseProbeLine } from '../src/worker/blender/probe.ts';

// Lines captured from Blender 3.4.1 (Debian) and from docs/BLENDER-NOTES.md.
const CYCLES_SAMPLE_ZERO =
  'Fra:1 Mem:10.04M (Peak 10.30M) | Time:00:00.04 | Mem:0.76M, Peak:0.76M | Scene, ViewLayer | Sample 0/4';
const CYCLES_SAMPLE_ONE =
  'Fra:2 Mem:10.09M (Peak 10.91M) | Time:00:00.08 | Remaining:00:00.03 | Mem:0.81M, Peak:0.81M | Scene, ViewLayer | Sample 1/4';
const CYCLES_NOTES =
  'Fra:1 Mem:49.68M (Peak 49.68M) | Time:00:17.29 | Remaining:00:49.60 | Mem:40.31M, Peak:40.31M | Scene, View Layer | Sample 33/128';
const EEVEE_NOTES = 'Fra:1 Mem:50.52M (Peak 51.63M) | Time:00:14.18 | Rendering 26 / 64 samples';
const EEVEE_CAPTURED = 'Fra:1 Mem:11.00M (Peak 12.11M) | Time:00:06.86 | Rendering 4 / 4 samples';

describe('parseProgressLine', () => {
  it('reads Cycles sample lines', () => {
    assert.deepEqual(parseProgressLine(CYCLES_SAMPLE_ZERO), { frame: 1, done: 0, total: 4, percent: 0 });
    assert.deepEqual(parseProgressLine(CYCLES_SAMPLE_ONE), { frame: 2, done: 1, total: 4, percent: 25 });
    assert.deepEqual(parseProgressLine(CYCLES_NOTES), {
      frame: 1,
      done: 33,
      total: 128,
      percent: (33 / 128) * 100,
    });
  });

  it('reads EEVEE sample lines', () => {
    assert.deepEqual(parseProgressLine(EEVEE_NOTES), { frame: 1, done: 26, total: 64, percent: 40.625 });
    assert.deepEqual(parseProgressLine(EEVEE_CAPTURED), { frame: 1, done: 4, total: 4, percent: 100 });
  });

  it('reads negative frame numbers', () => {
    const line = 'Fra:-5 Mem:10.04M (Peak 10.30M) | Time:00:00.04 | Mem:0.76M, Peak:0.76M | Scene, ViewLayer | Sample 2/8';
    assert.equal(parseProgressLine(line)?.frame, -5);
  });

  it('ignores every other line', () => {
    const others = [
      'Fra:2 Mem:9.54M (Peak 10.91M) | Time:00:00.07 | Mem:0.00M, Peak:0.01M | Scene, ViewLayer | Updating Scene BVH | Building BVH 0%',
      'Fra:2 Mem:10.14M (Peak 10.91M) | Time:00:00.09 | Mem:0.81M, Peak:0.81M | Scene, ViewLayer | Finished',
      'Fra:1 Mem:9.03M (Peak 9.31M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Loading render kernels (may take a few minutes the first time)',
      'Fra:1 Mem:10.04M (Peak 10.30M) | Time:00:00.04 | Mem:0.76M, Peak:0.76M | Scene, ViewLayer | Build without OpenImageDenoiser',
      'Fra:1 Mem:10.98M (Peak 12.11M) | Time:00:01.92 | Syncing Ground',
      "Saved: '/tmp/bt/cli_0002.png'",
      ' Time: 00:00.44 (Saving: 00:00.34)',
      'Read blend: /tmp/bt/s.blend',
      'Blender 3.4.1',
      '',
      // An object named like a status must not fool the parser: only the last field counts.
      'Fra:1 Mem:9.25M (Peak 9.31M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Synchronizing object | Sample 3/4 cube',
    ];
    for (const line of others) assert.equal(parseProgressLine(line), null, line);
  });

  it('rejects impossible counts', () => {
    assert.equal(parseProgressLine('Fra:1 Mem:1M (Peak 1M) | Time:00:00.00 | Scene, ViewLayer | Sample 0/0'), null);
    assert.equal(parseProgressLine('Fra:1 Mem:1M (Peak 1M) | Time:00:00.00 | Scene, ViewLayer | Sample 5/4'), null);
  });
});

describe('parseSessionEvent', () => {
  const NONCE = '0123456789abcdef0123456789abcdef';
  /** A line of the event pipe as session.py writes it. */
  const piped = (seq: number, fields: object) => JSON.stringify({ nonce: NONCE, seq, ...fields });

  it('reads the events session.py writes on its event pipe', () => {
    assert.deepEqual(parseSessionEvent(piped(1, { event: 'ready', blenderVersion: '3.4.1', sceneName: 'Scene' }), NONCE), {
      seq: 1,
      event: { event: 'ready', blenderVersion: '3.4.1', sceneName: 'Scene' },
    });
    assert.deepEqual(parseSessionEvent(piped(2, { event: 'saved', frame: 1, path: '/tmp/bt/ses_0001.png' }), NONCE), {
      seq: 2,
      event: { event: 'saved', frame: 1, path: '/tmp/bt/ses_0001.png' },
    });
    assert.deepEqual(
      parseSessionEvent(piped(3, { event: 'error', frame: 1, message: 'Error: Build without OpenImageDenoiser' }), NONCE)?.event,
      { event: 'error', frame: 1, message: 'Error: Build without OpenImageDenoiser' },
    );
    assert.deepEqual(parseSessionEvent(piped(4, { event: 'error', frame: null, message: "unknown command 'x'" }), NONCE)?.event, {
      event: 'error',
      frame: null,
      message: "unknown command 'x'",
    });
    assert.equal(parseSessionEvent(piped(5, { event: 'fatal', message: 'bad override' }), NONCE)?.event.event, 'fatal');
  });

  it('reads the probe event', () => {
    const line = JSON.stringify({
      nonce: NONCE, event: 'probe', frameStart: 1, frameEnd: 3, frameStep: 1, fps: 24.0,
      resolutionX: 64, resolutionY: 48, resolutionPercentage: 100, engine: 'CYCLES',
      fileFormat: 'PNG', samples: 4, denoising: false, blenderVersion: '3.4.1', sceneName: 'Scene',
    });
    const scene = parseProbeLine(line, NONCE);
    assert.equal(scene?.fps, 24);
    assert.equal(scene?.samples, 4);
    assert.equal(scene?.engine, 'CYCLES');
    assert.deepEqual(scene?.tileBlockers, [], 'an older probe without tile blockers reads as none');
    assert.equal(parseProbeLine('Fra:1 Mem:10.04M', NONCE), null);
    assert.equal(parseProbeLine(line, NONCE.replace('0', 'f')), null, 'another nonce: not our probe');
    assert.equal(parseProbeLine(`@@ARCHENLAND ${line}`, NONCE), null, 'the old stdout form is no answer');
    assert.throws(() => parseProbeLine(line.replace('"fps":24', '"fps":"fast"'), NONCE), /invalid scene information \(fps: /);
  });

  it('returns null for other lines, malformed events and events without this nonce', () => {
    const bad = [
      'Fra:1 Mem:10.04M (Peak 10.30M) | Time:00:00.04 | Scene, ViewLayer | Sample 0/4',
      'not json',
      piped(1, { event: 'saved', frame: 'one', path: '/x.png' }),
      piped(1, { event: 'saved', frame: 1 }),
      piped(1, { event: 'teleport' }),
      piped(0, { event: 'fatal', message: 'x' }),
      JSON.stringify({ nonce: NONCE, event: 'fatal', message: 'no sequence number' }),
      JSON.stringify({ nonce: 'f'.repeat(32), seq: 1, event: 'fatal', message: 'wrong nonce' }),
      JSON.stringify({ seq: 1, event: 'fatal', message: 'no nonce' }),
      // The old protocol's stdout lines are no events any more, however well formed.
      '@@ARCHENLAND {"event": "saved", "frame": 1, "path": "/x.png"}',
      `@@ARCHENLAND ${piped(1, { event: 'saved', frame: 1, path: '/x.png' })}`,
      '[1, 2]',
    ];
    for (const line of bad) assert.equal(parseSessionEvent(line, NONCE), null, line);
  });
});

describe('findBlenderError', () => {
  it('finds Blender and Python error lines', () => {
    assert.equal(
      findBlenderError(['Blender 3.4.1', "Error: File format is not supported in file '/x.txt'", '', 'Blender quit']),
      "Error: File format is not supported in file '/x.txt'",
    );
    assert.equal(
      findBlenderError(['Traceback (most recent call last):', '  File "x.py", line 1', 'TypeError: bad enum']),
      'TypeError: bad enum',
    );
    assert.equal(findBlenderError(['Blender 3.4.1', 'Blender quit']), null);
  });
});
