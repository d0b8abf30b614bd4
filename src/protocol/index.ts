/** The one place every message and API shape is defined; server, worker, CLI and UI import it. */
export * from './api.ts';
export * from './errors.ts';
export * from './lifecycle.ts';
export * from './routes.ts';
export * from './frames.ts';
export * from './messages.ts';
export * from './scene.ts';
export * from './tiles.ts';
export * from './results.ts';
export * from './projects.ts';
export * from './peers.ts';
export * from './blender-session.ts';
export * from './api-error.ts';
export * from './blender-versions.ts';
export * from './schedule.ts';
export * from './tag-schedules.ts';
