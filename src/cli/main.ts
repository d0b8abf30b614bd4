import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/index.ts';
import type { ErrorCode } from '../protocol/index.ts';
import { ApiError } from './client.ts';
import { registerClientCommands } from './commands-client.ts';
import { registerFarmCommands } from './commands-farm.ts';
import { EXIT, RefusedError, UsageError } from './common.ts';

const program = new Command()
  .name('archenland')
  .description('A distributed Blender render farm: a server, any number of workers, and a web interface.')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride()
  .addHelpText(
    'after',
    `
Finding the server (client commands): --server/--token flags, then ARCHENLAND_SERVER and
ARCHENLAND_TOKEN, then the settings.conf in this folder (or -c FILE) and its server's token file.
Job and worker arguments take a full id, a unique id prefix, or an exact name.

Exit codes:
  0  success
  1  the farm refused, the job did not complete (submit --wait), or you answered no
  2  usage or configuration error
  3  the server cannot be reached

Examples:
  $ archenland start
  $ archenland submit shot010.blend --frames 1-250 --wait
  $ archenland jobs --json
  $ archenland download 3f2a9c --frames -o shot010/

More: docs/cli.md, or archenland help <command>.
`,
  );

registerFarmCommands(program);
registerClientCommands(program);

/** What to do next, for refusals a person at the terminal can fix. */
const HINTS: Partial<Record<ErrorCode, string>> = {
  UNAUTHENTICATED: 'hint: give a user token with ARCHENLAND_TOKEN (or --token); the server keeps its first one in data_dir/user-token',
  WRONG_TOKEN_ROLE: 'hint: this is a worker token; commands need a user token (archenland token create --role user)',
  UNKNOWN_HOST: "hint: add the name you reach the server by to public_hosts in the server's settings.conf",
};

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? EXIT.ok : EXIT.usage);
  const message = (error as Error).message;
  console.error(`archenland: ${message}`);
  if (error instanceof ApiError && error.code !== null && HINTS[error.code]) console.error(HINTS[error.code]);
  if (error instanceof ConfigError || error instanceof UsageError) process.exit(EXIT.usage);
  if (error instanceof ApiError) process.exit(error.status === 0 ? EXIT.unreachable : EXIT.failed);
  if (error instanceof RefusedError) process.exit(EXIT.failed);
  process.exit(EXIT.failed);
}
