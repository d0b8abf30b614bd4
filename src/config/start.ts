import { loadSettingsAndSources, type LoadSettingsOptions } from './load.ts';
import { LOCAL_WORKER_KEYS, type ServerSettings, type WorkerSettings } from './schema.ts';

export interface StartSettingsSplit {
  server: ServerSettings;
  /**
   * The local worker's keys the user gave (in the file, the environment or a flag), to be
   * laid over the worker's own defaults; keys left to their defaults are absent, so they do
   * not override a separate worker settings file (`--worker-config`).
   */
  localWorker: Partial<WorkerSettings>;
}

/**
 * Settings of `archenland start`: one settings.conf holds the server's keys and its local
 * worker's (blender_path, threads, …), as a single-machine user writes it.
 */
export function loadStartSettings(opts: LoadSettingsOptions = {}): StartSettingsSplit {
  const { settings, given } = loadSettingsAndSources('start', opts);
  const entries = Object.entries(settings);
  const isWorkerKey = (key: string) => LOCAL_WORKER_KEYS.includes(key);
  return {
    server: Object.fromEntries(entries.filter(([key]) => !isWorkerKey(key))) as ServerSettings,
    localWorker: Object.fromEntries(entries.filter(([key]) => isWorkerKey(key) && given.has(key))) as Partial<WorkerSettings>,
  };
}
