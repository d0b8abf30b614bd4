import { unzipSync } from 'fflate';

/**
 * A folder or .zip the user dropped, read in the browser: every file by its path inside
 * the project ("/"-separated, relative to the folder or to the zip's top folder).
 */
export interface PickedProject {
  /** The folder's name, or the zip's (its single top folder, else its file name less ".zip"). */
  name: string;
  files: ProjectEntry[];
  /** The .blend files that could be the main one, shallowest first. */
  blends: string[];
}

export interface ProjectEntry {
  path: string;
  blob: Blob;
}

/** Hidden files (".git", ".DS_Store"…) and macOS's zip resource forks are not part of a scene. */
function isSkipped(path: string): boolean {
  return path.split('/').some((part) => part.startsWith('.') || part === '__MACOSX');
}

/** Blender's backups (".blend1", ".blend2"…) are never what the user means to render. */
const BACKUP = /\.blend\d+$/i;
const BLEND = /\.blend$/i;

function picked(name: string, entries: ProjectEntry[]): PickedProject {
  const files = entries.filter((entry) => !isSkipped(entry.path) && !BACKUP.test(entry.path));
  files.sort((a, b) => a.path.localeCompare(b.path));
  const depth = (path: string) => path.split('/').length;
  const blends = files
    .map((file) => file.path)
    .filter((path) => BLEND.test(path))
    .sort((a, b) => depth(a) - depth(b) || a.localeCompare(b));
  if (blends.length === 0) throw new Error(`there is no .blend file in ${name}`);
  return { name, files, blends };
}

/** The files of an `<input type=file webkitdirectory>`: each knows its path from the chosen folder. */
export function projectFromFileList(list: FileList): PickedProject {
  const files = [...list];
  const first = files[0]?.webkitRelativePath.split('/')[0];
  if (!first) throw new Error('the folder is empty');
  const prefix = `${first}/`;
  return picked(
    first,
    files.map((file) => ({ path: file.webkitRelativePath.startsWith(prefix) ? file.webkitRelativePath.slice(prefix.length) : file.webkitRelativePath, blob: file })),
  );
}

/** A folder dropped on the page, walked through the (old, callback-based) entries API. */
export async function projectFromDirectory(directory: FileSystemDirectoryEntry): Promise<PickedProject> {
  const entries: ProjectEntry[] = [];
  const walk = async (folder: FileSystemDirectoryEntry, prefix: string): Promise<void> => {
    const reader = folder.createReader();
    // readEntries answers in batches (100 in Chromium) until it answers none.
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
      if (batch.length === 0) return;
      for (const entry of batch) {
        const path = prefix + entry.name;
        if (isSkipped(path)) continue;
        if (entry.isDirectory) await walk(entry as FileSystemDirectoryEntry, `${path}/`);
        else entries.push({ path, blob: await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject)) });
      }
    }
  };
  await walk(directory, '');
  if (entries.length === 0) throw new Error(`the folder ${directory.name} is empty`);
  return picked(directory.name, entries);
}

/**
 * A .zip unpacked in memory. Synchronous unpacking on purpose: fflate's asynchronous one
 * starts Web Workers from blob: URLs, which the page's Content-Security-Policy forbids.
 */
export async function projectFromZip(zip: File): Promise<PickedProject> {
  let unpacked: Record<string, Uint8Array>;
  try {
    unpacked = unzipSync(new Uint8Array(await zip.arrayBuffer()), {
      filter: (entry) => !entry.name.endsWith('/') && !isSkipped(entry.name.replace(/\\/g, '/')),
    });
  } catch (error) {
    throw new Error(`${zip.name} cannot be read as a .zip (${(error as Error).message})`);
  }
  let entries = Object.entries(unpacked).map(([name, data]) => {
    // Some Windows tools write backslashes; a path must stay inside the project.
    const path = name.replace(/\\/g, '/').replace(/^\/+/, '');
    if (path.split('/').some((part) => part === '..' || part === '')) throw new Error(`${zip.name} holds a path that leaves its folder: ${name}`);
    return { path, blob: new Blob([data as Uint8Array<ArrayBuffer>]) };
  });
  if (entries.length === 0) throw new Error(`${zip.name} holds no files`);
  // Zipping a folder puts everything under that folder's name: it is the project's root.
  let name = zip.name.replace(/\.zip$/i, '');
  const top = entries[0]!.path.split('/')[0]!;
  if (entries.every((entry) => entry.path.startsWith(`${top}/`))) {
    name = top;
    entries = entries.map((entry) => ({ ...entry, path: entry.path.slice(top.length + 1) }));
  }
  return picked(name, entries);
}

export const isZip = (file: File) => /\.zip$/i.test(file.name) || file.type === 'application/zip' || file.type === 'application/x-zip-compressed';
