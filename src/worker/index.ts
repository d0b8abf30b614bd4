export { RenderWorker, readBlenderVersion } from './worker.ts';
