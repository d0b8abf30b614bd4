/**
 * src/protocol/messages.ts names Node's Buffer in parseMessage, which only the server and
 * workers call; this keeps the shared protocol type-checking in the browser program.
 */
declare const Buffer: { byteLength(value: string): number };
