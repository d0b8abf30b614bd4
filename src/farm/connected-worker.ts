import type { Asleep, ServerToWorker } from '../protocol/index.ts';
import type { WorkerRow } from '../store/index.ts';

/** How the farm talks to one connected worker; the WebSocket edge implements it. */
export interface WorkerLink {
  send(message: ServerToWorker): void;
  close(reason: string): void;
  /** The address the connection came from: peers reach a serving worker there. */
  remoteAddress?: string;
}

/** What a worker renders now: a frame, or one tile of it. */
export interface CurrentWork {
  jobId: string;
  frame: number;
  tile?: number;
  /** How many tiles the frame is split into, when `tile` is set. */
  tiles?: number;
  percent: number;
}

export interface ConnectedWorker {
  id: string;
  link: WorkerLink;
  enabled: boolean;
  current: CurrentWork | null;
  /** Its stored row, kept current by every write, so publishing it costs no query. */
  row: WorkerRow;
  /** Its owner lets it run the Python inside .blend files (allow_scripts). */
  allowScripts: boolean;
  /** The tags it takes jobs by: set on the server, else ownTags. It takes only jobs whose required tags it all has. */
  tags: string[];
  /** Its own `tags` setting, as it said in its hello. */
  ownTags: string[];
  /** The versions of its Blender installations, its default first, as it said in its hello. */
  blenders: string[];
  /** What it renders on, as it said in its hello. */
  device: { type: string; devices: string[] } | null;
  /** Sent in the welcome; its uploads present it, binding them to this connection. */
  uploadKey: string;
  /** Outside the hours of its schedules (its own and its tags'): until when and why; null while it takes work. */
  asleep: Asleep | null;
}

export const isWorkOn = (current: CurrentWork | null | undefined, jobId: string, frame: number, tile?: number): current is CurrentWork =>
  current?.jobId === jobId && current.frame === frame && current.tile === tile;
