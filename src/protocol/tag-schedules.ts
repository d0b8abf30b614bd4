import { z } from 'zod';
import { tagSchema } from './api.ts';
import { scheduleStopSchema, scheduleTextSchema } from './schedule.ts';

/**
 * Schedules the server sets per worker tag, for a whole room at once ("room-2 renders
 * Mon-Fri 18:00-08:00"). The server keeps them and sends each worker those of its tags; the
 * worker reads them in its own local time, beside its own `schedule` setting, and renders
 * only in hours that every one of them allows.
 */
export const tagScheduleSchema = z.object({
  tag: tagSchema,
  schedule: scheduleTextSchema,
  /** When the hours end mid-frame; null: the worker's own `schedule_stop` setting decides. */
  stop: scheduleStopSchema.nullable(),
});
export type TagSchedule = z.infer<typeof tagScheduleSchema>;

/** `PUT /api/tag-schedules/:tag`: the tag's schedule from now on, replacing any it had. */
export const tagScheduleInputSchema = z.strictObject({
  schedule: scheduleTextSchema,
  stop: scheduleStopSchema.nullable().default(null),
});
export type TagScheduleInput = z.infer<typeof tagScheduleInputSchema>;

/** A tag's schedule as the API shows it. */
export const tagScheduleViewSchema = tagScheduleSchema.extend({
  updatedAt: z.string(),
  /** Names of the connected workers that carry the tag, so follow it now. */
  workers: z.array(z.string()),
});
export type TagScheduleView = z.infer<typeof tagScheduleViewSchema>;
