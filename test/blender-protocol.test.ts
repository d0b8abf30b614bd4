/**
 * One schema for the worker ↔ Blender session protocol (issue #16): the JSON Schema that
 * session.py checks with is generated from the TypeScript schemas and up to date, and the
 * Python validator and zod agree on what is a valid command.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sessionCommandSchema, sessionEventSchema } from '../src/protocol/index.ts';
import { SESSION_PROTOCOL_FILE, sessionProtocolText } from '../scripts/session-protocol.ts';

const BLENDER_DIR = fileURLToPath(new URL('../blender', import.meta.url));

/** What farm_session/protocol.py says of each value: null when valid, else its message. */
function pythonVerdicts(kind: 'command' | 'event', values: unknown[]): Array<string | null> {
  const script = [
    'import json, sys',
    `sys.path.insert(0, ${JSON.stringify(BLENDER_DIR)})`,
    'from farm_session.protocol import check_command, check_event, ProtocolError',
    `check = check_${kind}`,
    'out = []',
    'for value in json.load(sys.stdin):',
    '    try:',
    '        check(value); out.append(None)',
    '    except ProtocolError as error:',
    '        out.append(str(error))',
    'print(json.dumps(out))',
  ].join('\n');
  return JSON.parse(execFileSync('python3', ['-c', script], { input: JSON.stringify(values) }).toString());
}

const tile = { index: 0, cols: 2, rows: 1, x: 0, y: 0, width: 32, height: 48, frameWidth: 64, frameHeight: 48 };
const commands: unknown[] = [
  { cmd: 'open', file: '/c/s.blend', allowScripts: false, overrides: {}, project: null },
  { cmd: 'open', file: '/c/s.blend', allowScripts: true, overrides: { samples: 4, engine: 'CYCLES', denoising: false }, project: { root: 'C:\\proj', tree: '/c/p' } },
  { cmd: 'render', frame: -3, output: '/o/frame_####' },
  { cmd: 'render', frame: 1, output: '/o/tile_####', tile },
  { cmd: 'quit' },
  // refused:
  { cmd: 'rendr', frame: 1, output: '/o' },
  { cmd: 'render', frame: '1', output: '/o' },
  { cmd: 'render', frame: 1.5, output: '/o' },
  { cmd: 'render', frame: 1, output: '' },
  { cmd: 'render', frame: 1 },
  { cmd: 'render', frame: 1, output: '/o', tile: { ...tile, width: 0 } },
  { cmd: 'open', file: '/c/s.blend', allowScripts: 1, overrides: {}, project: null },
  { cmd: 'open', file: '/c/s.blend', allowScripts: false, overrides: { samples: 0 }, project: null },
  { cmd: 'open', file: '/c/s.blend', allowScripts: false, overrides: {}, project: { root: '/p' } },
  [1],
  'quit',
  null,
];

describe('the worker ↔ Blender session protocol, declared once', () => {
  it('session_protocol.json is generated from src/protocol/blender-session.ts and up to date', () => {
    assert.equal(readFileSync(SESSION_PROTOCOL_FILE, 'utf8'), sessionProtocolText(), 'run: node --import tsx scripts/session-protocol.ts');
  });

  it('Python and TypeScript accept and refuse the same commands', () => {
    const python = pythonVerdicts('command', commands);
    commands.forEach((command, i) => {
      const zod = sessionCommandSchema.safeParse(command).success;
      assert.equal(python[i] === null, zod, `${JSON.stringify(command)}: zod ${zod ? 'accepts' : 'refuses'}, Python says ${python[i] ?? 'valid'}`);
    });
    assert.equal(python[6], 'command.frame must be an integer, got "1"', 'a refusal names the field');
  });

  it('and the same events', () => {
    const events = [
      { event: 'saved', frame: 1, path: '/o/frame_0001.png' },
      { event: 'error', frame: null, message: 'boom' },
      { event: 'ready', blenderVersion: '3.4.1', sceneName: 'Scene' },
      { event: 'saved', frame: 1 },
      { event: 'progress', frame: 1 },
      { event: 'fatal' },
    ];
    const python = pythonVerdicts('event', events);
    events.forEach((event, i) => assert.equal(python[i] === null, sessionEventSchema.safeParse(event).success, JSON.stringify(event)));
  });
});
