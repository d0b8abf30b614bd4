import { z } from 'zod';
import { tagsSchema } from '../protocol/api.ts';
import { blenderVersionSchema } from '../protocol/blender-versions.ts';
import { scheduleStopSchema, scheduleTextSchema } from '../protocol/schedule.ts';

/**
 * The settings each process understands, with their defaults. Objects are strict
 * so a typo in settings.conf ("prot = 7411") is reported instead of silently ignored.
 * Every field carries a description: `describeSettings()` turns them into `--help` text.
 */

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const port = (fallback: number, description: string) =>
  z.int().min(1).max(65535).default(fallback).describe(description);

const logLevel = () =>
  z.enum(LOG_LEVELS).default('info').describe('Log verbosity');

/** How log records are written (src/util/log.ts): `auto` is `text` on a terminal, `json` anywhere else. */
export const LOG_FORMATS = ['auto', 'json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
const logFormat = () =>
  z
    .enum(LOG_FORMATS)
    .default('auto')
    .describe('How logs are written on stderr: json (one object a line, for the journal, files and log collectors), text (readable lines), or auto: text when stderr is a terminal, json otherwise');

// A short shared secret is guessable; the lower bound also catches a token pasted only partly.
const token = (description: string) => z.string().min(16).optional().describe(description);

const text = (fallback: string, description: string) => z.string().min(1).default(fallback).describe(description);

const file = (description: string) => z.string().min(1).optional().describe(description);

/** A certificate's SHA-256 fingerprint as openssl prints it (colons optional, any case). */
const fingerprint = (description: string) =>
  z
    .string()
    .regex(/^(?:sha256\/\/)?[0-9a-fA-F]{2}(?::?[0-9a-fA-F]{2}){31}$/, 'expected a SHA-256 fingerprint: 64 hex digits, colons allowed')
    .optional()
    .describe(description);

export const serverSchema = z.strictObject({
  ffmpeg_path: text('ffmpeg', 'ffmpeg executable used to encode frames into video; a bare name is looked up on PATH'),
  port: port(7411, 'WebSocket port for workers and live web UI updates'),
  web_port: port(8080, 'HTTP port of the web interface and API'),
  bind: text('0.0.0.0', 'Address to listen on; 0.0.0.0 means all interfaces'),
  data_dir: text('archenland-data', 'Folder for the database, uploads and rendered frames; a relative path is resolved against the folder of the settings file'),
  max_upload_mb: z.int().min(1).default(4096).describe('Largest accepted upload, in MiB'),
  token: token(
    'Legacy single farm token (at least 16 characters) that opens everything: the worker protocol and the API. Unset (recommended), the server keeps separate worker and user tokens (`archenland token`)',
  ),
  heartbeat_timeout_s: z.int().min(1).max(3600).default(30).describe('Seconds without a heartbeat before a worker is considered offline'),
  frame_retries: z.int().min(0).max(100).default(3).describe('How many times a failed frame is retried'),
  frame_timeout_s: z.int().min(0).max(604800).default(0).describe('Seconds a single frame may render before it is aborted; 0 disables the limit'),
  trust_loopback: z
    .boolean()
    .default(true)
    .describe('Let requests from 127.0.0.0/8 and ::1 through without a token, as long as they name this machine in Host and came through no proxy (no Forwarded / X-Forwarded-* header)'),
  public_hosts: z
    .array(z.string().min(1).max(255))
    .default([])
    .describe("Extra host names browsers may use to reach this server (its DNS names, a reverse proxy's name); loopback names, the machine's host name and its own addresses are always accepted"),
  tls_cert: file('PEM certificate (chain) file: with tls_key, the server speaks HTTPS and WSS instead of HTTP and WS'),
  tls_key: file('PEM private key file for tls_cert'),
  queue_policy: z
    .enum(['fifo', 'fair'])
    .default('fifo')
    .describe('How jobs of the same priority share the workers: fifo, the earliest submitted first; fair, each idle worker to the job with the fewest workers on it, so they split the farm evenly'),
  video_streams: z
    .int()
    .min(0)
    .max(64)
    .default(2)
    .describe(
      "How many jobs' videos ffmpeg encodes while they render (one ffmpeg each, fed the frames in order as they arrive, so the video is ready moments after the last frame); other jobs' videos are encoded when their last frame is in. 0: always at the end",
    ),
  progress_reports_per_second: z
    .int()
    .min(1)
    .max(100_000)
    .default(1000)
    .describe(
      "How many render progress reports a second all workers together send: a small farm's workers report every 250 ms, a big farm's less often (every 2 s at 2,000 workers), so the reports do not slow the server down",
    ),
  tail_duplicates: z
    .boolean()
    .default(true)
    .describe('At the end of a job, let idle workers copy frames still running on slower workers; the first result wins'),
  serve_limit_mbps: z
    .number()
    .min(0)
    .max(1_000_000)
    .default(0)
    .describe("Limit on what the server sends workers (.blend and project files), in Mbit/s, shared by all their downloads together: keeps room on a shared network. Peer transfer (workers' peer_port) takes most of that traffic off the server. 0: no limit"),
  webhook_url: z
    .url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
    .optional()
    .describe('URL that receives a POST with JSON {"event": "job.completed" | "job.failed", "job": {...}} when a job ends; unset sends nothing'),
  log_level: logLevel(),
  log_format: logFormat(),
});

export const workerSchema = z.strictObject({
  blender_path: z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1).max(16)])
    .default('blender')
    .describe(
      'Blender executable; a bare name is looked up on PATH. A list (["/opt/blender-4.2/blender", "/opt/blender-3.6/blender"]) names several installations, the first the default; each reports its version at start',
    ),
  blenders: z
    .record(z.string(), z.string().min(1))
    .superRefine((table, context) => {
      const keys = Object.keys(table);
      if (keys.length > 16) context.addIssue({ code: 'custom', message: 'at most 16 installations' });
      for (const key of keys.filter((key) => !blenderVersionSchema.safeParse(key).success)) {
        context.addIssue({ code: 'custom', message: `"${key}" is not a Blender version: name each installation by its version, like "4.2" or "4.2.1"` });
      }
    })
    .optional()
    .describe(
      'More Blender installations, as a table from version to executable: [blenders] then "4.2" = "/opt/blender-4.2/blender". A job asking for a version (submit --blender 4.2) goes only to workers that have it',
    ),
  threads: z.int().min(0).max(1024).default(0).describe('Render threads; 0 lets Blender decide'),
  prewarm_blender: z
    .boolean()
    .default(true)
    .describe("Keep one Blender started (no scene loaded) while the worker is idle, so a job's first frame skips Blender's start-up; false starts Blender only when a job's first frame arrives"),
  address: text('127.0.0.1', 'Host name or IP address of the server'),
  port: port(7411, "The server's WebSocket port"),
  web_port: port(8080, "The server's HTTP port"),
  name: z.string().min(1).optional().describe('Name shown in the web UI; defaults to the host name'),
  cache_dir: text('archenland-worker', 'Folder for downloaded files and rendered frames; a relative path is resolved against the folder of the settings file'),
  nice: z
    .int()
    .min(0)
    .max(19)
    .default(10)
    .describe('CPU niceness Blender runs at, 0 (normal priority) to 19 (lowest); its disk I/O priority follows. The default, 10, keeps a workstation usable for the person at it while it renders'),
  schedule: scheduleTextSchema
    .optional()
    .describe(
      'Hours this worker renders, in local time, e.g. "Mon-Fri 18:00-08:00; Sat-Sun": days (Mon, Mon-Fri, Mon,Wed) and an optional HH:MM-HH:MM range, which runs past midnight when it ends before it starts. Outside them it takes no new frame. Unset: always. A schedule the server sets for one of its tags (archenland tag-schedule) applies too: the worker renders only in hours that every one of them allows',
    ),
  schedule_stop: scheduleStopSchema
    .default('finish')
    .describe("When the schedule ends mid-frame: finish that frame first, or hand it back now (another worker renders it); also for a tag's schedule that sets no stop of its own"),
  min_free_mb: z.int().min(0).max(10_000_000).default(200).describe('Take no frame while the cache folder has less free space than this (MiB); the frame goes to another worker and this one waits for space'),
  cache_max_gb: z
    .number()
    .min(0)
    .max(1_000_000)
    .default(20)
    .describe('Size budget of the .blend and project files kept in cache_dir (GiB); the least recently used go first, never those of the job being rendered. 0: no limit'),
  peer_port: z
    .int()
    .min(0)
    .max(65535)
    .optional()
    .describe("Port this worker serves the files of its cache on to other workers of the farm (peer transfer: a project sent to many workers leaves the server about once); 0: any free port. Other workers reach it at the address the server sees it connect from. Plain HTTP, so not with tls. Unset: it does not serve (it still fetches from peers)"),
  token: token("A worker token from the server (`archenland token create --role worker`), or the legacy farm token"),
  render_device: z
    .enum(['CPU', 'CUDA', 'OPTIX', 'HIP', 'ONEAPI', 'METAL'])
    .default('CPU')
    .describe("Where Cycles renders: the CPU, or the GPUs of one backend (CUDA, OPTIX, HIP, ONEAPI, METAL), set in Blender's preferences for every scene; the worker refuses to start when Blender cannot use it"),
  gpus: z
    .array(z.int().min(0).max(63))
    .max(64)
    .default([])
    .describe('Which GPUs of render_device to use, by index in Blender\'s order, e.g. [1] to pin one worker per GPU (archenland worker --gpus 1 --name box-gpu1); empty: all of them'),
  tags: tagsSchema
    .default([])
    .describe('Tags of this machine, e.g. ["gpu", "room-2"]: a job that requires tags (submit --tags) goes only to workers that have all of them'),
  allow_scripts: z
    .boolean()
    .default(false)
    .describe('Run Python embedded in .blend files for jobs that ask for it (allowScripts); false: such jobs go to other workers'),
  tls: z.boolean().default(false).describe('Connect with HTTPS and WSS (the server has tls_cert and tls_key); tls_ca or tls_fingerprint imply it'),
  tls_ca: file("PEM file of the certificate authority that signed the server's certificate, for a self-signed or private one"),
  tls_fingerprint: fingerprint("SHA-256 fingerprint of the server's certificate; when set, exactly that certificate is accepted, whoever signed it"),
  log_level: logLevel(),
  log_format: logFormat(),
});

/**
 * The worker settings `archenland start` reads for its local worker, from the same
 * settings.conf as the server's: what a single-machine user says about rendering. The
 * others (address, tls, tls_ca, tls_fingerprint) say how to reach a server, which `start`
 * knows itself; port, web_port, token and log_level are the server's keys there.
 */
const localWorkerFields = workerSchema.pick({
  blender_path: true,
  blenders: true,
  threads: true,
  nice: true,
  schedule: true,
  schedule_stop: true,
  tags: true,
  render_device: true,
  gpus: true,
  prewarm_blender: true,
  name: true,
  min_free_mb: true,
  cache_max_gb: true,
  allow_scripts: true,
}).shape;

/** `archenland start`: the server's settings plus its local worker's, in one file. */
export const startSchema = z.strictObject({
  ...serverSchema.shape,
  ...localWorkerFields,
  // The local worker's cache sits in the server's data folder unless the user says otherwise.
  cache_dir: file("The local worker's folder for downloaded files and rendered frames; unset: local-worker inside data_dir"),
});

/** Keys of `start`'s settings that are its local worker's. */
export const LOCAL_WORKER_KEYS: readonly string[] = [...Object.keys(localWorkerFields), 'cache_dir'];

export type ServerSettings = z.output<typeof serverSchema>;
export type WorkerSettings = z.output<typeof workerSchema>;
export type StartSettings = z.output<typeof startSchema>;

export const settingsSchemas = { server: serverSchema, worker: workerSchema, start: startSchema };
export type SettingsKind = keyof typeof settingsSchemas;
export type Settings = ServerSettings | WorkerSettings | StartSettings;

/** Settings written as a TOML table ([blenders] then "4.2" = "…"): the only headers settings.conf accepts. */
export const TABLE_SETTINGS: readonly string[] = ['blenders'];

/** Folders and files that are resolved to absolute paths, relative to where their value was written. */
export const PATH_SETTINGS: readonly string[] = ['data_dir', 'cache_dir', 'tls_cert', 'tls_key', 'tls_ca'];

/** Field schemas by key, for code that handles settings generically. */
export function settingsShape(kind: SettingsKind): Record<string, z.ZodType> {
  return settingsSchemas[kind].shape;
}

/** A list setting whose items are numbers (gpus = [0, 1]). */
export function isNumberList(schema: z.ZodArray): boolean {
  return baseSchema(schema.element as z.ZodType) instanceof z.ZodNumber;
}

/** The schema without its default/optional wrappers: what a given value must look like. */
export function baseSchema(schema: z.ZodType): z.ZodType {
  let inner = schema;
  while (inner instanceof z.ZodDefault || inner instanceof z.ZodOptional) inner = inner.unwrap() as z.ZodType;
  return inner;
}
