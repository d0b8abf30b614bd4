import { z } from 'zod';
import { asleepSchema, frameSchema, idSchema, jobSchema, sha256Schema, tagsSchema, workerSchema } from './api.ts';
import { sceneInfoSchema, sceneOverridesSchema } from './scene.ts';
import { usedDeviceSchema } from './blender-session.ts';
import { projectRefSchema } from './projects.ts';
import { blenderVersionSchema, installedVersionSchema } from './blender-versions.ts';
import { peerKeySchema, workerFilesSchema } from './peers.ts';
import { tileIndexSchema as tileIndex, tileRegionSchema } from './tiles.ts';
import { tagScheduleSchema } from './tag-schedules.ts';

/**
 * Bumped whenever a message changes incompatibly. The server refuses a worker that
 * speaks another version, rather than letting it misread assignments.
 */
export const PROTOCOL_VERSION = 9;

/** A WebSocket message larger than this is refused before it is parsed. */
export const MAX_MESSAGE_BYTES = 256 * 1024;

/** Which tile of a split frame a message is about; absent for a whole frame. */
const tileIndexSchema = tileIndex.optional();

const blendRefSchema = z.object({ sha256: sha256Schema, size: z.number().int().nonnegative() });
export type BlendRef = z.infer<typeof blendRefSchema>;

// ---- worker -> server ------------------------------------------------------------

const helloSchema = z.object({
  type: z.literal('hello'),
  role: z.literal('worker'),
  protocol: z.number().int(),
  token: z.string().max(512),
  /** Kept by the worker across restarts so the farm sees the same machine come back. */
  workerId: idSchema.optional(),
  name: z.string().min(1).max(100),
  host: z.string().min(1).max(255),
  threads: z.number().int().min(0).max(1024),
  blenderVersion: z.string().max(100).nullable(),
  /** Every Blender installation it has (blender_path list, [blenders] table), the default first. */
  blenders: z.array(installedVersionSchema).max(32).default([]),
  /** The worker runs jobs whose .blend Python may run (its allow_scripts setting). */
  allowScripts: z.boolean().default(false),
  /** Its `tags` setting: jobs that require tags go only to workers with all of them. */
  tags: tagsSchema.default([]),
  /** The device it renders on (render_device, gpus), as Blender reported it; null: not told. */
  device: usedDeviceSchema.nullable().optional(),
  /** Frames rendered while the worker was away whose uploads are still on their way. */
  holding: z.array(z.object({ jobId: idSchema, frame: z.number().int(), tile: tileIndexSchema })).max(10_000).default([]),
  /** The port it serves the files of its cache to other workers on (its peer_port setting); absent: it does not. */
  peerPort: z.int().min(1).max(65535).optional(),
});

const readySchema = z.object({ type: z.literal('ready') });

/** Sent on every connection while asleep, and whenever that changes; `asleep` null: awake. */
const scheduleStateSchema = z.object({
  type: z.literal('schedule'),
  asleep: asleepSchema.nullable(),
});

const progressSchema = z.object({
  type: z.literal('progress'),
  jobId: idSchema,
  frame: z.number().int(),
  tile: tileIndexSchema,
  percent: z.number().min(0).max(100),
});

const frameFailedSchema = z.object({
  type: z.literal('frame_failed'),
  jobId: idSchema,
  frame: z.number().int(),
  tile: tileIndexSchema,
  error: z.string().max(4000),
  log: z.string().max(64 * 1024),
  /**
   * `disk_full`: the worker could not take the frame; `asleep`: its schedule ended (with
   * schedule_stop = "now"). Either is no fault of the frame and costs no attempt.
   */
  reason: z.enum(['render', 'disk_full', 'asleep']).default('render'),
});

const probeResultSchema = z.object({
  type: z.literal('probe_result'),
  jobId: idSchema,
  scene: sceneInfoSchema,
});

const probeFailedSchema = z.object({
  type: z.literal('probe_failed'),
  jobId: idSchema,
  error: z.string().max(4000),
  /** `disk_full`: this worker could not look; another (or this one, later) should. */
  reason: z.enum(['scene', 'disk_full']).default('scene'),
});

export const workerMessageSchema = z.discriminatedUnion('type', [
  helloSchema,
  readySchema,
  scheduleStateSchema,
  progressSchema,
  frameFailedSchema,
  probeResultSchema,
  probeFailedSchema,
  workerFilesSchema,
]);
export type WorkerMessage = z.infer<typeof workerMessageSchema>;
export type WorkerHello = z.infer<typeof helloSchema>;

// ---- observers (web UI, CLI --wait) -> server ---------------------------------------

const observeSchema = z.object({
  type: z.literal('observe'),
  protocol: z.number().int(),
  token: z.string().max(512).optional(),
});
export const observerMessageSchema = z.discriminatedUnion('type', [observeSchema]);

/** The first message on any connection says who is speaking. */
export const firstMessageSchema = z.discriminatedUnion('type', [helloSchema, observeSchema]);

// ---- server -> worker ------------------------------------------------------------

export const renderAssignmentSchema = z.object({
  type: z.literal('render'),
  jobId: idSchema,
  frame: z.number().int(),
  blend: blendRefSchema,
  allowScripts: z.boolean(),
  overrides: sceneOverridesSchema,
  fileExtension: z.string(),
  /** The files the .blend uses, laid out around it (null: a self-contained .blend). */
  project: projectRefSchema.nullable().default(null),
  /** Render only this region of the frame (a tile), cropped to it. */
  tile: tileRegionSchema.optional(),
  /** The Blender release the job renders with ("4.2"); null: the worker's default installation. */
  blender: blenderVersionSchema.nullable().default(null),
});
export type RenderAssignment = z.infer<typeof renderAssignmentSchema>;

export const probeRequestSchema = z.object({
  type: z.literal('probe'),
  jobId: idSchema,
  blend: blendRefSchema,
  allowScripts: z.boolean(),
  project: projectRefSchema.nullable().default(null),
  /** The Blender the job asked for; null: the worker's default installation reads it. */
  blender: blenderVersionSchema.nullable().default(null),
});
export type ProbeRequest = z.infer<typeof probeRequestSchema>;

const progressMsSchema = z.int().min(100).max(60_000);

export const serverToWorkerSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('welcome'),
    workerId: idSchema,
    protocol: z.number().int(),
    /** Sent with every upload (x-archenland-upload-key): binds it to this connection. */
    uploadKey: z.string().min(16).max(100),
    /** The farm's peer key: what peers ask of each other instead of a worker token (src/protocol/peers.ts). */
    peerKey: peerKeySchema,
    /** Report a render's progress at most this often (the farm paces it by its size: src/farm/progress-pace.ts). */
    progressMs: progressMsSchema,
  }),
  /** The farm grew or shrank past a step: report progress at most this often from now on. */
  z.object({ type: z.literal('pace'), progressMs: progressMsSchema }),
  /** The peer key changed (a worker token was revoked): peers accept only the new one. */
  z.object({ type: z.literal('peer_key'), peerKey: peerKeySchema }),
  renderAssignmentSchema,
  probeRequestSchema,
  /**
   * The schedules the server set for this worker's tags: sent before the welcome, and again
   * whenever they or its tags change. Empty: none of its tags has one.
   */
  z.object({ type: z.literal('tag_schedules'), schedules: z.array(tagScheduleSchema).max(32) }),
  /** The job ended or the frame went to someone else: stop and drop it. */
  z.object({ type: z.literal('cancel'), jobId: idSchema, frame: z.number().int().optional(), tile: tileIndexSchema }),
  z.object({ type: z.literal('error'), message: z.string() }),
]);
export type ServerToWorker = z.infer<typeof serverToWorkerSchema>;

// ---- server -> observers ---------------------------------------------------------

/** A change in the farm, as the farm service emits it. */
export const farmChangeSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('job'), job: jobSchema }),
  z.object({ type: z.literal('job_removed'), jobId: idSchema }),
  z.object({ type: z.literal('frame'), frame: frameSchema }),
  z.object({ type: z.literal('worker'), worker: workerSchema }),
  /**
   * A worker's progress on the frame (or tile) it renders: sent instead of its whole worker
   * view and the frame's, which progress would otherwise resend many times a second per
   * worker. `percent` is the worker's own (its view's `current.percent`); `frameProgress`
   * the frame's, as its view's `progress` would say (a split frame's is the mean over its
   * tiles, which only the server knows). Apply it only while the worker still renders that
   * frame (or tile) and the frame is still rendering: it may arrive after a state change.
   */
  z.object({
    type: z.literal('progress'),
    workerId: idSchema,
    jobId: idSchema,
    frame: z.number().int(),
    tile: z.number().int().optional(),
    percent: z.number().min(0).max(100),
    frameProgress: z.number().min(0).max(100),
  }),
]);
export type FarmChange = z.infer<typeof farmChangeSchema>;
export type ProgressChange = Extract<FarmChange, { type: 'progress' }>;

/**
 * What observers receive. Changes are sent in batches a few times a second, keeping only
 * the latest state of each job, frame and worker, so a 100,000-frame job on hundreds of
 * workers does not flood a browser.
 */
export const farmEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('welcome'), protocol: z.number().int() }),
  z.object({ type: z.literal('batch'), changes: z.array(farmChangeSchema) }),
  z.object({ type: z.literal('error'), message: z.string() }),
]);
export type FarmEvent = z.infer<typeof farmEventSchema>;

/** A batch as read leniently: its changes are checked one by one (parseFarmEvent). */
const lenientFarmEventSchema = z.discriminatedUnion('type', [
  farmEventSchema.options[0],
  z.object({ type: z.literal('batch'), changes: z.array(z.unknown()) }),
  farmEventSchema.options[2],
]);

/**
 * Reads an observer message. A change this client does not know (a newer server's) or
 * cannot read is left out, and counted in `skipped`, instead of losing the whole batch
 * with the job and frame changes that came with it. No size limit (unlike parseMessage):
 * the server sends it, and a busy farm's batch is larger than any message a worker sends.
 */
export function parseFarmEvent(raw: string): { ok: true; event: FarmEvent; skipped: number } | { ok: false; error: string } {
  const parsed = parseJsonAs(lenientFarmEventSchema, raw);
  if (!parsed.ok) return parsed;
  const { message } = parsed;
  if (message.type !== 'batch') return { ok: true, event: message, skipped: 0 };
  const changes: FarmChange[] = [];
  for (const change of message.changes) {
    const checked = farmChangeSchema.safeParse(change);
    if (checked.success) changes.push(checked.data);
  }
  return { ok: true, event: { type: 'batch', changes }, skipped: message.changes.length - changes.length };
}

/** The identity a change is coalesced under: later changes to the same thing replace earlier ones. */
export function changeKey(change: FarmChange): string {
  switch (change.type) {
    case 'job':
      return `job:${change.job.id}`;
    case 'job_removed':
      return `job:${change.jobId}`;
    case 'frame':
      return `frame:${change.frame.jobId}:${change.frame.number}`;
    case 'worker':
      return `worker:${change.worker.id}`;
    case 'progress':
      // Per worker: its latest report says all there is (a worker renders one thing at a time).
      return `progress:${change.workerId}`;
  }
}

/** Parses raw WebSocket data against a schema, with a message fit to send back. */
export function parseMessage<T>(
  schema: z.ZodType<T>,
  raw: string,
): { ok: true; message: T } | { ok: false; error: string } {
  if (new TextEncoder().encode(raw).length > MAX_MESSAGE_BYTES) {
    return { ok: false, error: `message larger than ${MAX_MESSAGE_BYTES} bytes` };
  }
  return parseJsonAs(schema, raw);
}

/** JSON text checked against a schema, whatever its size. */
function parseJsonAs<T>(schema: z.ZodType<T>, raw: string): { ok: true; message: T } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, error: 'message is not valid JSON' };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) return { ok: false, error: `invalid message: ${describeIssues(parsed.error)}` };
  return { ok: true, message: parsed.data };
}

export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => (issue.path.length ? `${issue.path.join('.')}: ${issue.message}` : issue.message))
    .join('; ');
}
