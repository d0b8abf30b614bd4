/**
 * Machine facts and the report: a console table and docs/benchmarks.md. Each benchmark's
 * section in the markdown carries its rows as JSON in a comment, so running a subset
 * (`npm run bench -- scale`) replaces only those sections and keeps the others.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mdTable, type Row } from './harness.ts';

export interface MachineFacts {
  cores: number;
  cpu: string;
  memory: string;
  os: string;
  node: string;
  blender: string;
  ffmpeg: string;
  curl: string;
  commit: string;
}

function firstLine(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 30_000 }).split('\n')[0]!.trim();
  } catch {
    return 'not found';
  }
}

export function machineFacts(): MachineFacts {
  let osName = `${os.type()} ${os.release()}`;
  try {
    const pretty = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1];
    if (pretty) osName = `${pretty} (${os.release()})`;
  } catch {
    // keep the kernel name
  }
  const dirty = firstLine('git', ['status', '--porcelain', '--untracked-files=no']) !== '' ? ' + uncommitted changes' : '';
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memory: `${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB`,
    os: osName,
    node: process.version,
    blender: firstLine(process.env.BLENDER ?? 'blender', ['--version']),
    ffmpeg: firstLine('ffmpeg', ['-version']).replace(/ Copyright.*$/, ''),
    curl: firstLine('curl', ['--version']).split(' ').slice(0, 2).join(' '),
    commit: `${firstLine('git', ['rev-parse', '--short', 'HEAD'])}${dirty}`,
  };
}

export function machineLine(m: MachineFacts): string {
  return `${m.cores} cores (${m.cpu}), ${m.memory} RAM, ${m.os}; Node ${m.node}; ${m.blender}; ${m.ffmpeg}; ${m.curl}; commit ${m.commit}`;
}

/** One benchmark's results as stored in the report. */
export interface Section {
  name: string;
  title: string;
  date: string;
  command: string;
  quick: boolean;
  machine: string;
  /** 1-minute load average before and after the benchmark: above the core count, others were using the machine. */
  load?: [number, number];
  rows: Row[];
  details: string;
}

const verdict = (row: Row) => (row.pass === undefined ? '' : row.pass ? 'pass' : 'FAIL');

/** A plain-text table for the terminal. */
export function consoleTable(sections: Section[], planned: Array<{ name: string; title: string }>): string {
  const lines: string[][] = [['benchmark', 'figure', 'value', 'target', '']];
  for (const s of sections) for (const r of s.rows) lines.push([s.name, r.figure, r.value, r.target ?? '', verdict(r)]);
  for (const p of planned) lines.push([p.name, `${p.title}: not written yet`, '—', '—', 'pending']);
  const widths = lines[0]!.map((_, i) => Math.min(i === 1 ? 60 : 70, Math.max(...lines.map((l) => l[i]!.length))));
  return lines.map((l) => l.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

const BEGIN = /<!-- bench:section (\{.*\}) -->\n/g;
const END = '<!-- bench:end -->';

/** Sections already in the report, so a partial run keeps the others. */
export function readSections(file: string): Map<string, Section> {
  const sections = new Map<string, Section>();
  if (!existsSync(file)) return sections;
  const text = readFileSync(file, 'utf8');
  for (const match of text.matchAll(BEGIN)) {
    try {
      const meta = JSON.parse(match[1]!) as Omit<Section, 'details'>;
      const start = match.index! + match[0].length;
      const end = text.indexOf(END, start);
      if (end < 0) continue;
      const body = text.slice(start, end);
      // The section body is the rendered heading and run line, then the details.
      const details = body.split('\n<!-- bench:details -->\n')[1]?.trimEnd() ?? '';
      sections.set(meta.name, { ...meta, details });
    } catch {
      // a hand-edited or broken section is dropped and rewritten by the next run
    }
  }
  return sections;
}

export function writeReport(
  file: string,
  order: string[],
  sections: Map<string, Section>,
  planned: Array<{ name: string; title: string }>,
  latest: { date: string; command: string; machine: MachineFacts },
): void {
  const ordered = order.map((n) => sections.get(n)).filter((s): s is Section => s !== undefined);
  const summary: Array<Array<string>> = [];
  for (const s of ordered) {
    for (const r of s.rows) summary.push([`[${s.name}](#${anchor(s)})${s.quick ? ' (quick)' : ''}`, r.figure, r.value, r.target ?? '', verdict(r)]);
  }
  for (const p of planned) summary.push([p.name, `**${p.title}: reserved row, benchmark not written yet**`, '—', '—', 'pending']);

  const m = latest.machine;
  const out = [
    '# Benchmarks',
    '',
    'Written by `bench/run.ts` (`npm run bench`); do not edit by hand. Each figure is a ratio measured side by side',
    'in one run or a median of repeated runs. Run `npm run bench -- NAME…` for some benchmarks only (their sections',
    'are replaced, the others kept with their own date), and `--quick` for smaller sizes.',
    '',
    `Latest run: ${latest.date}, \`${latest.command}\``,
    '',
    mdTable(['machine', ''], [
      ['cores', `${m.cores} (${m.cpu})`],
      ['memory', m.memory],
      ['OS', m.os],
      ['Node.js', m.node],
      ['Blender', m.blender],
      ['ffmpeg', m.ffmpeg],
      ['curl', m.curl],
      ['commit', m.commit],
    ]),
    '',
    '## Summary',
    '',
    mdTable(['benchmark', 'figure', 'value', 'target', 'result'], summary),
    '',
  ];
  for (const s of ordered) {
    const { details, ...meta } = s;
    out.push(
      `<!-- bench:section ${JSON.stringify(meta)} -->`,
      `## ${s.title} (\`${s.name}\`)`,
      '',
      `Run: ${s.date}, \`${s.command}\`${s.quick ? ' — **quick sizes**' : ''}. Machine: ${s.machine}.` +
        (s.load ? ` Load average (1 min) before / after: ${s.load[0].toFixed(1)} / ${s.load[1].toFixed(1)}${Math.max(...s.load) > 2 ? ' — the machine was busy with other work; expect noise' : ''}.` : ''),
      '',
      mdTable(['figure', 'value', 'target', 'result'], s.rows.map((r) => [r.figure, r.value, r.target ?? '', verdict(r)])),
      '',
      '<!-- bench:details -->',
      details,
      END,
      '',
    );
  }
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${out.join('\n').trimEnd()}\n`);
}

function anchor(s: Section): string {
  return `${s.title} (${s.name})`
    .toLowerCase()
    .replace(/[^\p{L}\p{N} -]/gu, '')
    .replace(/ /g, '-');
}
