/** Settings for server and worker processes, read from settings.conf, the environment and flags. */
export { loadSettings, type LoadSettingsOptions } from './load.ts';
export { loadStartSettings, type StartSettingsSplit } from './start.ts';
export { ConfigError, type ConfigErrorLocation } from './errors.ts';
export { describeSettings, type SettingDescription } from './describe.ts';
export { envVarName } from './env.ts';
export { DEFAULT_SETTINGS_FILE } from './file.ts';
export {
  LOG_LEVELS,
  serverSchema,
  workerSchema,
  startSchema,
  LOCAL_WORKER_KEYS,
  TABLE_SETTINGS,
  settingsSchemas,
  type ServerSettings,
  type WorkerSettings,
  type StartSettings,
  type Settings,
  type SettingsKind,
} from './schema.ts';
