import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/index.ts';
import { ApiError } from './client.ts';
import { EXIT, registerClientCommands, UsageError } from './commands-client.ts';
import { registerFarmCommands } from './commands-farm.ts';

const program = new Command()
  .name('archenland')
  .description('A distributed Blender render farm: a server, any number of workers, and a web interface.')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

registerFarmCommands(program);
registerClientCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : EXIT.usage);
  const message = (error as Error).message;
  console.error(`archenland: ${message}`);
  if (error instanceof ConfigError || error instanceof UsageError) process.exit(EXIT.usage);
  if (error instanceof ApiError) process.exit(error.statusCode === 0 ? EXIT.unreachable : EXIT.failed);
  process.exit(EXIT.failed);
}
