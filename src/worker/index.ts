export { RenderWorker } from './worker.ts';
