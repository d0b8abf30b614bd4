import type { z } from 'zod';
import { describeIssues } from '../protocol/index.ts';
import { FarmError } from '../farm/index.ts';

/** A request part checked against its schema; a mismatch is a 400 naming the field. */
export function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new FarmError('INVALID_REQUEST', `invalid request: ${describeIssues(parsed.error)}`);
  return parsed.data;
}
