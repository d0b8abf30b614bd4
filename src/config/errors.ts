/** Where a bad setting was found, as far as known. */
export interface ConfigErrorLocation {
  /** Absolute path of the settings file, when the problem is in (or about) a file. */
  file?: string;
  /** Setting name, e.g. "web_port". */
  key?: string;
  /** 1-based line in the settings file. */
  line?: number;
}

/** Any problem with the settings: the message is complete and meant to be shown to the user as is. */
export class ConfigError extends Error {
  readonly file?: string;
  readonly key?: string;
  readonly line?: number;

  constructor(message: string, location: ConfigErrorLocation = {}, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConfigError';
    this.file = location.file;
    this.key = location.key;
    this.line = location.line;
  }
}
