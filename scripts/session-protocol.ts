/**
 * Writes blender/farm_session/session_protocol.json, the JSON Schema session.py checks the
 * worker's commands (and its own events) against, from src/protocol/blender-session.ts.
 * Run after changing a command: `node --import tsx scripts/session-protocol.ts`.
 * test/blender-protocol.test.ts fails while the file is out of date.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sessionProtocolDocument } from '../src/protocol/index.ts';

export const SESSION_PROTOCOL_FILE = fileURLToPath(new URL('../blender/farm_session/session_protocol.json', import.meta.url));

export function sessionProtocolText(): string {
  return `${JSON.stringify(sessionProtocolDocument(), null, 1)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(SESSION_PROTOCOL_FILE, sessionProtocolText());
  console.log(`wrote ${SESSION_PROTOCOL_FILE}`);
}
