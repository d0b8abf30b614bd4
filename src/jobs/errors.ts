/** A job that cannot be rendered as asked; the message is shown to the user as is. */
export class CompileError extends Error {}
