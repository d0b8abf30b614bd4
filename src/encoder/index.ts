export { encodeVideo } from './ffmpeg.ts';
export type { EncodeRequest } from './ffmpeg.ts';
