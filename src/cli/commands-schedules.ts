import { Option, type Command } from 'commander';
import type { z } from 'zod';
import {
  apiPath,
  describeIssues,
  scheduleStopSchema,
  scheduleTextSchema,
  tagSchema,
  type TagScheduleInput,
  type TagScheduleView,
} from '../protocol/index.ts';
import { clientFrom, examples, print, UsageError, withClientOptions, type CommonOptions } from './common.ts';
import { table } from './format.ts';

type Options = CommonOptions & { stop?: 'finish' | 'now'; clear?: boolean };

/** `archenland tag-schedule`: the hours the workers carrying a tag render, set on the server. */
export function registerScheduleCommands(program: Command): void {
  const command = withClientOptions(program.command('tag-schedule [tag] [schedule]'))
    .description(
      "set the hours the workers carrying a tag render (a whole room's), in each worker's local time, e.g. \"Mon-Fri 18:00-08:00; Sat-Sun\"; " +
        "a worker renders only in hours that all its schedules allow (its own schedule setting and each of its tags'). " +
        'Workers follow a change at once. Without a schedule: show the tag\'s; without a tag: list them all',
    )
    .addOption(
      new Option('--stop <when>', "when the hours end mid-frame: finish that frame first, or hand it back now (default: each worker's schedule_stop)").choices(
        scheduleStopSchema.options,
      ),
    )
    .option('--clear', "remove the tag's schedule: its workers go back to their own")
    .action(async (typedTag: string | undefined, typedSchedule: string | undefined, options: Options) => {
      if (typedTag === undefined) {
        if (options.clear || options.stop) throw new UsageError('name the tag: archenland tag-schedule TAG …');
        const all = await clientFrom(options).get<TagScheduleView[]>(apiPath('listTagSchedules'));
        return print(options.json, all, all.length === 0 ? 'no tag schedules' : formatTagSchedules(all));
      }
      const tag = checked('tag', tagSchema, typedTag);
      const client = clientFrom(options);
      if (options.clear) {
        if (typedSchedule !== undefined || options.stop) throw new UsageError('give a schedule or --clear, not both');
        await client.delete(apiPath('clearTagSchedule', { tag }));
        return print(options.json, { tag, cleared: true }, `tag ${tag}: schedule cleared; its workers follow their own schedules`);
      }
      if (typedSchedule === undefined) {
        if (options.stop) throw new UsageError('--stop goes with a schedule: archenland tag-schedule TAG "Mon-Fri 18:00-08:00" --stop now');
        const found = (await client.get<TagScheduleView[]>(apiPath('listTagSchedules'))).find((s) => s.tag === tag) ?? null;
        return print(options.json, found, found ? formatTagSchedules([found]) : `tag ${tag}: no schedule`);
      }
      const input: TagScheduleInput = { schedule: checked('schedule', scheduleTextSchema, typedSchedule), stop: options.stop ?? null };
      const set = await client.put<TagScheduleView>(apiPath('setTagSchedule', { tag }), input);
      print(options.json, set, `tag ${set.tag}: renders ${set.schedule} (${stopText(set)}); ${workersText(set)}`);
    });
  examples(command, [
    'archenland tag-schedule room-2 "Mon-Fri 18:00-08:00; Sat-Sun"',
    'archenland tag-schedule room-2 "Mon-Fri 19:00-07:00" --stop now',
    'archenland tag-schedule room-2 --clear',
    'archenland tag-schedule            # every tag schedule',
    'archenland tag-schedule --json',
  ]);
}

/** A value typed on the command line, checked as the server would: a bad one is a usage error (exit 2). */
function checked<T>(what: string, schema: z.ZodType<T>, value: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new UsageError(`${what}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

function formatTagSchedules(schedules: TagScheduleView[]): string {
  const rows = schedules.map((s) => [s.tag, s.schedule, s.stop ?? "worker's", s.workers.join(',') || '-']);
  return table(['TAG', 'SCHEDULE', 'STOP', 'CONNECTED WORKERS'], rows);
}

const stopText = (s: TagScheduleView) => (s.stop ? `frames under way: ${s.stop === 'now' ? 'handed back' : 'finished'}` : "frames under way: as each worker's schedule_stop says");

const workersText = (s: TagScheduleView) =>
  s.workers.length === 0 ? 'no connected worker carries it yet' : `followed now by ${s.workers.join(', ')}`;
