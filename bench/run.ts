/**
 * The benchmark suite: `npm run bench [-- NAME…] [--quick] [--key=value…]`.
 *
 * Runs the selected benchmarks (all by default) one after another, prints a table of
 * figures against their targets, and writes docs/benchmarks.md with the date, the machine
 * and the exact command. Options: `--quick` smaller sizes; `--out=FILE` another report
 * file; `--no-report` print only; benchmark-specific `--key=value` options are listed in
 * bench/README.md. Everything reads its options through bench/lib/options.ts.
 *
 * Adding a benchmark: one file under bench/ exporting a `Benchmark` (bench/lib/harness.ts),
 * and one line in BENCHMARKS below.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bigFiles } from './big-files.ts';
import { firstFrame } from './first-frame.ts';
import { idleWorkers } from './idle-workers.ts';
import type { Benchmark, BenchContext } from './lib/harness.ts';
import { option, OptionError, parseCommandLine, unreadOptions } from './lib/options.ts';
import { consoleTable, machineFacts, machineLine, readSections, writeReport, type Section } from './lib/report.ts';
import { overhead } from './overhead.ts';
import { peerTransfer } from './peer-transfer.ts';
import { resubmit } from './resubmit.ts';
import { scale } from './scale.ts';
import { tailDuplication } from './tail-duplication.ts';
import { tiles } from './tiles.ts';
import { uiLoad } from './ui-load.ts';
import { videoStream } from './video-stream.ts';

const BENCHMARKS: Benchmark[] = [
  overhead,
  firstFrame,
  scale,
  bigFiles,
  tailDuplication,
  uiLoad,
  tiles,
  resubmit,
  idleWorkers,
  videoStream,
  peerTransfer,
  // ---- add new benchmarks here (one line each) ----
];

/**
 * Rows kept free in the table for benchmarks that are planned but not written yet. A row
 * disappears by itself once a benchmark with that name is in BENCHMARKS.
 */
const PLANNED: Array<{ name: string; title: string }> = [];

const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const { names, options, help } = parseCommandLine(args);
  if (help) return usage(0);
  const suite = { quick: false, options };
  const quick = option(suite, 'quick', { default: false });
  const report = option(suite, 'report', { default: true });
  const out = option(suite, 'out', { default: 'docs/benchmarks.md' });
  const unknown = names.filter((n) => !BENCHMARKS.some((b) => b.name === n));
  if (unknown.length) {
    console.error(`unknown benchmark: ${unknown.join(', ')}`);
    return usage(2);
  }
  const selected = names.length ? BENCHMARKS.filter((b) => names.includes(b.name)) : BENCHMARKS;
  const command = process.env.npm_lifecycle_event === 'bench' ? `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}` : `node --import tsx bench/run.ts ${args.join(' ')}`.trim();
  const machine = machineFacts();
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  console.log(`Archenland benchmarks: ${selected.map((b) => b.name).join(', ')}${quick ? ' (quick)' : ''}`);
  console.log(`Machine: ${machineLine(machine)}\n`);

  const results: Section[] = [];
  let crashed = 0;
  let badOptions = 0;
  for (const bench of selected) {
    const started = Date.now();
    const loadBefore = os.loadavg()[0]!;
    console.log(`▶ ${bench.name}: ${bench.title}`);
    const ctx: BenchContext = { quick, options, log: (m) => console.log(`  ${m}`) };
    let section: Section;
    try {
      const result = await bench.run(ctx);
      section = { name: bench.name, title: bench.title, date, command, quick, machine: machineLine(machine), ...result };
    } catch (error) {
      // A bad option is the command's fault, not the benchmark's: its last good section stays in the report.
      if (error instanceof OptionError) {
        badOptions++;
        console.error(`  ${error.message}\n`);
        continue;
      }
      crashed++;
      console.error(error);
      section = {
        name: bench.name,
        title: bench.title,
        date,
        command,
        quick,
        machine: machineLine(machine),
        rows: [{ figure: 'benchmark did not finish', value: String((error as Error).message).slice(0, 200), target: 'runs', pass: false }],
        details: `The benchmark failed:\n\n\`\`\`\n${String((error as Error).stack ?? error)}\n\`\`\``,
      };
    }
    section.load = [loadBefore, os.loadavg()[0]!];
    results.push(section);
    console.log(`  (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  }

  const planned = PLANNED.filter((p) => !BENCHMARKS.some((b) => b.name === p.name));
  console.log(consoleTable(results, planned));
  const unread = unreadOptions(options);
  if (unread.length) console.log(`\nNot used by the benchmarks that ran (a typo?): ${unread.map((k) => `--${k}`).join(' ')}`);
  if (report) {
    const file = path.resolve(ROOT, out);
    const sections = readSections(file);
    for (const s of results) sections.set(s.name, s);
    for (const name of [...sections.keys()]) if (!BENCHMARKS.some((b) => b.name === name)) sections.delete(name);
    writeReport(file, BENCHMARKS.map((b) => b.name), sections, planned, { date, command, machine });
    console.log(`\nReport written to ${path.relative(process.cwd(), file) || file}`);
  }
  return crashed ? 1 : badOptions ? 2 : 0;
}

function usage(code: number): number {
  console.log(`usage: npm run bench -- [NAME…] [--quick] [--out=FILE] [--no-report] [--key=value…]
benchmarks: ${BENCHMARKS.map((b) => `${b.name} (${b.title})`).join('; ')}`);
  return code;
}

process.exitCode = await main().catch((error: unknown) => {
  if (!(error instanceof OptionError)) throw error;
  console.error(error.message);
  return usage(2);
});
// Child processes and sockets of a benchmark that failed must not keep the suite alive.
setTimeout(() => process.exit(), 2000).unref();
