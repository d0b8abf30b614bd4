export { encodeVideo, videoOutputArgs } from './ffmpeg.ts';
export type { EncodeRequest } from './ffmpeg.ts';
export { canStreamFormat, VideoStream } from './stream.ts';
export type { StreamRequest } from './stream.ts';
