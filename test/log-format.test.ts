/**
 * Logs are JSON where machines read them (the journal, files, pipes) and readable lines on
 * a terminal: first through logDestination with a fake terminal, then for real, with the
 * server's own logs under a pseudo-terminal (`script`) and through a pipe.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { logDestination, type LogOutput } from '../src/util/log.ts';
import { freePorts } from './helpers/processes.ts';

const BIN = fileURLToPath(new URL('../bin/archenland.js', import.meta.url));

/** A stream that keeps what is written to it, posing as a terminal or not. */
function capture(isTTY: boolean): LogOutput & Writable & { text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return Object.assign(stream, { isTTY, text: () => chunks.join('') });
}

function logOnce(format: 'auto' | 'json' | 'text', isTTY: boolean): string {
  const output = capture(isTTY);
  pino({ name: 'farm' }, logDestination(format, output)).info({ jobId: 'abc123', frames: 250 }, 'job submitted');
  return output.text();
}

// Escape sequences that colour a terminal's text.
const COLOUR = /\x1b\[[0-9;]*m/;
const plain = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, '');

describe('log format', () => {
  it('auto: JSON when the output is not a terminal', () => {
    const record = JSON.parse(logOnce('auto', false));
    assert.equal(record.msg, 'job submitted');
    assert.equal(record.jobId, 'abc123');
    assert.equal(record.level, 30);
  });

  it('auto: one readable line on a terminal, with the time, level, part of the farm, message and fields', () => {
    const line = logOnce('auto', true);
    assert.equal(line.trimEnd().split('\n').length, 1, line);
    assert.match(plain(line), /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(farm\): job submitted .*"jobId":"abc123".*"frames":250/);
    if (!process.env.NO_COLOR) assert.match(line, COLOUR, 'coloured on a terminal');
    assert.doesNotMatch(line, /"pid"|"hostname"/);
  });

  it('json and text are kept whatever the output is; text off a terminal has no colours', () => {
    assert.equal(JSON.parse(logOnce('json', true)).msg, 'job submitted');
    const text = logOnce('text', false);
    assert.match(text, /INFO \(farm\): job submitted/);
    assert.doesNotMatch(text, COLOUR);
  });

  /** Runs `archenland server` until it logs that it listens, and returns what it wrote there. */
  async function serverOutput(underTerminal: boolean): Promise<string> {
    const dir = mkdtempSync(path.join(tmpdir(), 'archenland-log-'));
    const [port, webPort] = await freePorts(2);
    const args = [BIN, 'server', '--bind', '127.0.0.1', '--port', String(port), '--web-port', String(webPort), '--data-dir', dir];
    const quoted = [process.execPath, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
    // The format is left to the server: `auto`, whatever the environment running the tests says.
    const env = { ...process.env, ARCHENLAND_LOG_LEVEL: 'info', ARCHENLAND_LOG_FORMAT: '' };
    const options = { detached: true, env, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'] };
    // `script` gives the command a pseudo-terminal, as a person's shell would; its output is the terminal's.
    const child = underTerminal ? spawn('script', ['-qec', quoted, '/dev/null'], options) : spawn(process.execPath, args, options);
    let output = '';
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "server listening" within 30 s:\n${output}`)), 30_000);
        const read = (data: Buffer) => {
          output += data.toString();
          if (output.includes('server listening')) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout!.on('data', read);
        child.stderr!.on('data', read);
      });
    } finally {
      process.kill(-child.pid!, 'SIGKILL'); // the whole group: script, and the server under it
      rmSync(dir, { recursive: true, force: true });
    }
    return output;
  }

  it('the server logs readable lines on a terminal and JSON through a pipe', async () => {
    const terminal = plain(await serverOutput(true));
    const listening = terminal.split(/\r?\n/).find((line) => line.includes('server listening'));
    assert.match(listening ?? '', /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(server\): server listening/, terminal);
    assert.doesNotMatch(terminal, /\{"level":/);

    const piped = await serverOutput(false);
    const record = piped.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line)).find((r) => r.msg === 'server listening');
    assert.ok(record, piped);
    assert.equal(record.name, 'server');
  });
});
