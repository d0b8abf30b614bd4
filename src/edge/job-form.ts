import { z } from 'zod';
import { describeIssues, jobOptionsSchema, parseFrameRange, parseTiling, type JobOptions } from '../protocol/index.ts';
import { FarmError } from '../farm/index.ts';

/**
 * Multipart fields arrive as strings; this turns them into typed job options or a 400
 * naming the field. Field names match the API document (camelCase).
 */
const booleanText = z.enum(['true', 'false', '1', '0', 'on', 'off', 'yes', 'no']).transform((v) => ['true', '1', 'on', 'yes'].includes(v));
const integerText = z.string().regex(/^-?\d+$/, 'expected a whole number').transform(Number);

export const knownJobFields = Object.keys(jobOptionsSchema.shape);

export function parseJobFields(fields: Record<string, string>): JobOptions {
  for (const field of Object.keys(fields)) {
    if (!knownJobFields.includes(field)) throw new FarmError('INVALID_REQUEST', `unknown field "${field}" (known: ${knownJobFields.join(', ')})`);
  }
  const typed: Record<string, unknown> = {};
  try {
    if (fields.name !== undefined) typed.name = fields.name;
    if (fields.blender !== undefined && fields.blender.trim() !== '') typed.blender = fields.blender;
    if (fields.project !== undefined && fields.project !== '') typed.project = fields.project;
    if (fields.frames !== undefined && fields.frames.trim() !== '') typed.frames = parseFrameRange(fields.frames);
    if (fields.fileFormat) typed.fileFormat = fields.fileFormat.toUpperCase();
    for (const key of ['resolutionPercentage', 'samples', 'priority', 'maxWorkers'] as const) {
      if (fields[key] !== undefined && fields[key] !== '') typed[key] = parseField(key, integerText, fields[key]);
    }
    if (fields.tiles !== undefined && fields.tiles.trim() !== '') typed.tiles = parseTiling(fields.tiles);
    // A comma-separated list, as typed: "gpu, room-2".
    if (fields.requiredTags !== undefined) typed.requiredTags = fields.requiredTags.split(',').map((tag) => tag.trim()).filter(Boolean);
    if (fields.order !== undefined && fields.order.trim() !== '') typed.order = fields.order.trim().toLowerCase();
    for (const key of ['allowScripts', 'hold', 'forceTiles', 'denoising'] as const) {
      if (fields[key] !== undefined) typed[key] = parseField(key, booleanText, fields[key].toLowerCase());
    }
  } catch (error) {
    throw error instanceof FarmError ? error : new FarmError('INVALID_JOB_SETTINGS', (error as Error).message);
  }
  const parsed = jobOptionsSchema.safeParse(typed);
  if (!parsed.success) throw new FarmError('INVALID_REQUEST', `invalid job options: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

function parseField<T>(name: string, schema: z.ZodType<T>, value: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new FarmError('INVALID_REQUEST', `field "${name}": ${describeIssues(parsed.error)}, got "${value.slice(0, 40)}"`);
  return parsed.data;
}
