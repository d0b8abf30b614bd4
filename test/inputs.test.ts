import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFrameRange, frameCount, parseMessage, workerMessageSchema, MAX_MESSAGE_BYTES } from '../src/protocol/index.ts';
import { blendKindOf } from '../src/edge/blend-file.ts';
import { parseJobFields } from '../src/edge/job-form.ts';

describe('frame ranges', () => {
  test('parses single frames, ranges and steps', () => {
    assert.deepEqual(parseFrameRange('7'), { start: 7, end: 7, step: 1 });
    assert.deepEqual(parseFrameRange('1-250'), { start: 1, end: 250, step: 1 });
    assert.deepEqual(parseFrameRange(' 1 - 9 : 4 '), { start: 1, end: 9, step: 4 });
    assert.equal(frameCount(parseFrameRange('1-9:4')), 3);
  });

  test('refuses reversed, malformed and absurd ranges with a clear message', () => {
    assert.throws(() => parseFrameRange('10-1'), /ends before it starts/);
    assert.throws(() => parseFrameRange('1-x'), /expected N, A-B or A-B:STEP/);
    assert.throws(() => parseFrameRange('1-5:0'), /invalid frame range/);
    assert.throws(() => parseFrameRange('1-99999999'), /invalid frame range/);
  });
});

describe('.blend header check', () => {
  test('accepts plain, zstd and gzip .blend headers', () => {
    assert.equal(blendKindOf(Buffer.from('BLENDER-v304REND')), 'plain');
    assert.equal(blendKindOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0])), 'zstd');
    assert.equal(blendKindOf(Buffer.from([0x1f, 0x8b, 8, 0])), 'gzip');
  });

  test('refuses other files, and text that only starts like a .blend', () => {
    assert.equal(blendKindOf(Buffer.from('\x89PNG\r\n\x1a\n0000')), null);
    assert.equal(blendKindOf(Buffer.from('BLENDER is great')), null);
    assert.equal(blendKindOf(Buffer.alloc(0)), null);
  });
});

describe('job form fields', () => {
  test('turns multipart strings into typed options', () => {
    assert.deepEqual(parseJobFields({ frames: '1-4', fileFormat: 'jpeg', samples: '8', allowScripts: 'true' }), {
      frames: { start: 1, end: 4, step: 1 },
      fileFormat: 'JPEG',
      samples: 8,
      allowScripts: true,
      priority: 0,
      hold: false,
      tiles: 'auto',
      forceTiles: false,
      order: 'interleaved',
      requiredTags: [],
    });
    assert.deepEqual(parseJobFields({ tiles: '2x3', forceTiles: 'yes' }).tiles, { cols: 2, rows: 3 });
    assert.deepEqual(parseJobFields({ tiles: '4' }).tiles, { count: 4 });
    assert.equal(parseJobFields({ order: 'Sequential' }).order, 'sequential');
    assert.equal(parseJobFields({ maxWorkers: '3' }).maxWorkers, 3);
    assert.deepEqual(parseJobFields({ requiredTags: 'GPU, room-2,' }).requiredTags, ['gpu', 'room-2']);
  });

  test('names the bad field', () => {
    assert.throws(() => parseJobFields({ samples: 'many' }), /field "samples": expected a whole number/);
    assert.throws(() => parseJobFields({ resolutionPercentage: '0' }), /resolutionPercentage/);
    assert.throws(() => parseJobFields({ resolutionPercentage: '100000' }), /resolutionPercentage/);
    assert.throws(() => parseJobFields({ fileFormat: 'GIF' }), /fileFormat/);
    assert.throws(() => parseJobFields({ frames: '9-1' }), /ends before it starts/);
    assert.throws(() => parseJobFields({ '../../etc': 'x' }), /unknown field/);
    assert.throws(() => parseJobFields({ allowScripts: 'maybe' }), /allowScripts/);
    assert.throws(() => parseJobFields({ tiles: 'lots' }), /invalid tiles "lots"/);
    assert.throws(() => parseJobFields({ tiles: '1' }), /tiles/, 'one tile is no split: say off');
    assert.throws(() => parseJobFields({ order: 'random' }), /order.*interleaved.*sequential/);
    assert.throws(() => parseJobFields({ maxWorkers: '0' }), /maxWorkers/);
    assert.throws(() => parseJobFields({ requiredTags: 'gpu,room 2' }), /requiredTags.*a tag is up to 32 letters/);
    assert.throws(() => parseJobFields({ maxWorkers: 'two' }), /field "maxWorkers": expected a whole number/);
  });
});

describe('WebSocket message validation', () => {
  test('accepts a valid message', () => {
    const parsed = parseMessage(workerMessageSchema, JSON.stringify({ type: 'ready' }));
    assert.equal(parsed.ok, true);
  });

  test('refuses bad JSON, unknown types, wrong fields and oversized messages', () => {
    assert.deepEqual(parseMessage(workerMessageSchema, '{oops'), { ok: false, error: 'message is not valid JSON' });
    const unknown = parseMessage(workerMessageSchema, JSON.stringify({ type: 'format_disk' }));
    assert.equal(unknown.ok, false);
    assert.match(unknown.ok ? '' : unknown.error, /invalid message/);
    const badField = parseMessage(workerMessageSchema, JSON.stringify({ type: 'progress', jobId: '../x', frame: 1, percent: 5 }));
    assert.match(badField.ok ? '' : badField.error, /jobId/);
    const huge = parseMessage(workerMessageSchema, JSON.stringify({ type: 'ready', pad: 'x'.repeat(MAX_MESSAGE_BYTES) }));
    assert.match(huge.ok ? '' : huge.error, /larger than/);
  });
});
