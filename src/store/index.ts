export { Store } from './store.ts';
export type { JobRow, FrameRow, WorkerRow, NewJobRow } from './store.ts';
