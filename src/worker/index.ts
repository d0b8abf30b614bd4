export { RenderWorker } from './worker.ts';
export { readBlenderVersion } from './local-facts.ts';
