#!/usr/bin/env node
// Builds dist/archenland_submit.zip: the Blender add-on as Blender's
// "Preferences > Add-ons > Install..." expects it, one top-level folder holding the
// package (archenland_submit/__init__.py, ...). Tests and caches stay out.
// The farm's dependency walk (blender/farm_session/dependencies.py) goes in as
// archenland_submit/dependencies.py: the add-on finds a scene's files with the same code
// the CLI (blender/list_dependencies.py) and the workers use.
//
//   node scripts/build-addon.mjs [--out path/to/archenland_submit.zip]
//
// Entries get a fixed date so the same sources give the same zip bytes.
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ZipArchive } from 'archiver';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PACKAGE = 'archenland_submit';
const SOURCE = path.join(ROOT, 'addon', PACKAGE);
const FIXED_DATE = new Date('2024-01-01T00:00:00Z');
const EXCLUDED_DIRS = new Set(['__pycache__', 'tests']);
/** Files shared with the farm, copied into the package: name in the package -> source in the repository. */
const SHARED = { 'dependencies.py': 'blender/farm_session/dependencies.py' };

/** Files to ship, relative to the package folder, sorted for a stable order. */
async function packageFiles(dir = SOURCE, prefix = '') {
  const files = [];
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.')) continue;
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      if (!EXCLUDED_DIRS.has(entry.name)) files.push(...(await packageFiles(path.join(dir, entry.name), rel)));
    } else if (entry.isFile() && !/\.py[co]$/.test(entry.name)) {
      files.push(rel);
    }
  }
  return files;
}

export async function buildAddon(out = path.join(ROOT, 'dist', `${PACKAGE}.zip`)) {
  const own = await packageFiles();
  if (!own.includes('__init__.py')) throw new Error(`${SOURCE}/__init__.py is missing`);
  const sources = new Map(own.map((rel) => [rel, path.join(SOURCE, rel)]));
  for (const [rel, source] of Object.entries(SHARED)) {
    if (sources.has(rel)) throw new Error(`${SOURCE}/${rel} would hide ${source}, which the build copies there`);
    sources.set(rel, path.join(ROOT, source));
  }
  const files = [...sources.keys()].sort((a, b) => a.localeCompare(b));
  await mkdir(path.dirname(out), { recursive: true });
  // Written under a temporary name, then renamed: nobody sees half a zip.
  const partial = `${out}.${process.pid}.partial`;
  const zip = new ZipArchive({ zlib: { level: 9 } });
  // Buffers, appended in order (zip.file() stats files concurrently and may reorder them).
  for (const rel of files) {
    zip.append(await readFile(sources.get(rel)), { name: `${PACKAGE}/${rel}`, date: FIXED_DATE, mode: 0o644 });
  }
  try {
    await Promise.all([pipeline(zip, createWriteStream(partial)), zip.finalize()]);
    await rename(partial, out);
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
  return { out, files };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  try {
    const { out, files } = await buildAddon(values.out && path.resolve(values.out));
    console.log(`wrote ${path.relative(process.cwd(), out) || out} (${files.length} files: ${files.join(', ')})`);
  } catch (error) {
    console.error(`build-addon: ${error instanceof Error ? error.message : error}`);
    process.exit(1);
  }
}
