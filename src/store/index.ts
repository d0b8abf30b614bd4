export { Store } from './store.ts';
export type { JobRow, FrameRow, FrameSummaryRow, WorkerRow, NewJobRow, FrameResult, FrameFailure } from './store.ts';
export type { CredentialRows, TokenRow, SessionRow } from './credential-rows.ts';
export { DataDir, frameFileName } from './data-dir.ts';
export { commitFile, discardFile, ensureDir, type ReceivedFile } from './files.ts';
export type { ProjectRows, ProjectRow } from './project-rows.ts';
export type { TagScheduleRow } from './tag-schedule-rows.ts';
