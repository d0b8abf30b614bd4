/**
 * Re-submitting a project: a .blend and 40 textures (100 MB) are submitted the way
 * `archenland submit --project-dir` does (manifest, then only the files the server lacks),
 * one texture is changed, and the project is submitted again. The figure is the bytes the
 * second submission sends next to the first's, in the same run; the target is that only
 * the changed file and the .blend travel.
 */
import { apiPath } from '../src/protocol/index.ts';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApiClient } from '../src/cli/client.ts';
import { sendProject } from '../src/cli/project.ts';
import { uploadJob } from '../src/cli/upload.ts';
import { fakeBlend, postJson } from '../testkit/api.ts';
import { fmtMB, fmtPct, fmtRatio, fmtS, mdTable, now, type BenchContext, type BenchResult, type Benchmark } from './lib/harness.ts';
import { option } from './lib/options.ts';
import { ServerProcess } from './lib/server-process.ts';

const MiB = 1024 * 1024;

export const resubmit: Benchmark = {
  name: 'resubmit',
  title: 'Re-submitting a project with one file changed: bytes sent',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const files = option(ctx, 'files', { default: 40, quick: 10, min: 2, integer: true });
    const fileMB = option(ctx, 'file-mb', { default: 2.5, quick: 1, min: 0.01 });
    const root = mkdtempSync(path.join(os.tmpdir(), 'archenland-resubmit-'));
    const project = path.join(root, 'project');
    const blend = path.join(project, 'shots', 'main.blend');
    mkdirSync(path.dirname(blend), { recursive: true });
    writeFileSync(blend, fakeBlend(MiB));
    const textures = Array.from({ length: files }, (_, i) => path.join(project, 'tex', `t${String(i).padStart(3, '0')}.png`));
    mkdirSync(path.dirname(textures[0]!), { recursive: true });
    for (const texture of textures) writeFileSync(texture, randomBytes(Math.round(fileMB * MiB)));
    const server = await ServerProcess.start({ max_upload_mb: 1024 });
    const client = new ApiClient(server.httpUrl, server.token);
    const submit = async () => {
      const started = now();
      const sent = await sendProject(client, blend, { projectDir: project });
      const job = await uploadJob(client, blend, { project: sent.projectId! }, () => undefined);
      await postJson(server.httpUrl, server.token, apiPath('cancelJob', { id: job.id })); // no worker here: only the transfer counts
      return { ms: now() - started, uploaded: sent.uploadedBytes + statSync(blend).size, reused: sent.reusedBytes, files: sent.files };
    };
    try {
      ctx.log(`first submission: a 1 MB .blend and ${files} files of ${fileMB} MB`);
      const first = await submit();
      writeFileSync(textures[Math.floor(files / 2)]!, randomBytes(Math.round(fileMB * MiB)));
      ctx.log('one file changed: submitting again');
      const second = await submit();
      const expected = statSync(textures[Math.floor(files / 2)]!).size + statSync(blend).size;
      const rows = [
        { figure: 'bytes sent, first submission', value: fmtMB(first.uploaded) },
        {
          figure: 'bytes sent, re-submission with 1 file changed',
          value: `${fmtMB(second.uploaded)} (${fmtPct(second.uploaded / first.uploaded)} of the first)`,
          target: `= the changed file + the .blend (${fmtMB(expected)})`,
          pass: second.uploaded === expected,
        },
        { figure: 'time, first / re-submission', value: fmtRatio(first.ms / second.ms) },
      ];
      const details = [
        `A project of a 1 MB .blend and ${files} random files of ${fileMB} MB, submitted as \`archenland submit --project-dir\` does (src/cli/project.ts): a manifest, then only the files the server lacks, then the .blend. One file is rewritten and the project submitted again. Server in a child process on loopback; no workers (the jobs are cancelled at once).`,
        '',
        mdTable(
          ['submission', 'files listed', 'bytes sent', 'bytes already on the server', 'time'],
          [
            ['first', first.files, fmtMB(first.uploaded), fmtMB(first.reused), fmtS(first.ms)],
            ['one file changed', second.files, fmtMB(second.uploaded), fmtMB(second.reused), fmtS(second.ms)],
          ],
        ),
      ].join('\n');
      return { rows, details };
    } finally {
      await server.stop();
      rmSync(root, { recursive: true, force: true });
    }
  },
};
