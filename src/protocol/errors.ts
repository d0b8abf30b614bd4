import { z } from 'zod';

/**
 * Every error the HTTP API answers, by code: its HTTP status and what it means. Answers
 * are `{code, error}`: clients branch on the code, and show `error` (written for a person,
 * with the particulars) as it is. The OpenAPI document lists each route's codes.
 */
export const errorCatalogue = {
  INVALID_REQUEST: { status: 400, title: 'a parameter or the body does not match the schema; the message names the field' },
  BAD_UPLOAD: { status: 400, title: 'the upload is not the multipart form the route expects (for a job: one .blend in the field "file")' },
  EMPTY_FILE: { status: 400, title: 'the uploaded file is empty' },
  INVALID_JOB_SETTINGS: { status: 400, title: 'the render settings cannot be applied to this scene (a frame range outside it, a grid too fine)' },
  UNAUTHENTICATED: { status: 401, title: 'missing or wrong access token' },
  WRONG_TOKEN_ROLE: { status: 403, title: 'the token is of the wrong role for this route (a worker token on the API, or a user token on the worker protocol)' },
  CROSS_SITE_REQUEST: { status: 403, title: 'a browser state change without the x-archenland-client header, or from a page of another site' },
  NOT_FOUND: { status: 404, title: 'no such route' },
  JOB_NOT_FOUND: { status: 404, title: 'no job with that id' },
  FRAME_NOT_FOUND: { status: 404, title: 'the job has no such frame' },
  FRAME_NOT_RENDERED: { status: 404, title: 'the frame (or every frame) is not rendered yet' },
  TILE_NOT_FOUND: { status: 404, title: 'no such tile waiting to be stitched' },
  PASS_NOT_FOUND: { status: 404, title: 'the frame has no compositor pass of that name' },
  VIDEO_NOT_READY: { status: 404, title: 'the job has no video yet' },
  WORKER_NOT_FOUND: { status: 404, title: 'no worker with that id' },
  TOKEN_NOT_FOUND: { status: 404, title: 'no token with that id' },
  BLEND_NOT_FOUND: { status: 404, title: 'no .blend with that SHA-256' },
  FILE_NOT_FOUND: { status: 404, title: 'no project file with that SHA-256' },
  PROJECT_NOT_FOUND: { status: 404, title: 'no project with that id' },
  TAG_SCHEDULE_NOT_FOUND: { status: 404, title: 'the tag has no schedule set on the server' },
  JOB_STATE_CONFLICT: { status: 409, title: 'the job is not in a state that allows this (pausing a finished job, editing a started one)' },
  TOKEN_FROM_SETTINGS: { status: 409, title: 'the legacy token comes from the `token` setting and is removed there' },
  PROJECT_INCOMPLETE: { status: 409, title: "some of the project's files are not uploaded yet; the message names them" },
  TOO_LARGE: { status: 413, title: 'larger than max_upload_mb' },
  NOT_A_BLEND: { status: 415, title: 'the file is not a Blender file (plain, gzip or zstd)' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'the body is not of a content type this route takes (the job upload takes multipart/form-data)' },
  NO_PREVIEW: { status: 415, title: 'no preview for this image format (EXR)' },
  UNKNOWN_HOST: { status: 421, title: 'the Host header names no name of this server (add it to public_hosts)' },
  CORRUPT_UPLOAD: { status: 422, title: 'the upload is cut short, empty, or does not match its checksum' },
  PEER_BUSY: { status: 503, title: "a worker's peer server has all its upload slots taken: fetch the file from another source" },
  WORKER_NOT_CONNECTED: { status: 503, title: 'the upload key belongs to no open worker connection: upload again after reconnecting' },
  DISK_FULL: { status: 507, title: "the server's disk is full; the job is paused" },
  INTERNAL: { status: 500, title: 'a bug, logged on the server' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof errorCatalogue;
export const errorCodes = Object.keys(errorCatalogue) as [ErrorCode, ...ErrorCode[]];
export const errorCodeSchema = z.enum(errorCodes);

export const apiErrorSchema = z.object({ code: errorCodeSchema, error: z.string(), details: z.unknown().optional() });
/** An error answer's body, `{code, error}`. */
export type ErrorAnswer = z.infer<typeof apiErrorSchema>;

/** The codes answered with this HTTP status. */
export function codesWithStatus(status: number): ErrorCode[] {
  return errorCodes.filter((code) => errorCatalogue[code].status === status);
}
