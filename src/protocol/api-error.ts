import { apiErrorSchema, type ErrorCode } from './errors.ts';

/**
 * An API answer other than success, as every client (the CLI, the web UI) sees it: the
 * server's own message and `code` from the catalogue (errors.ts). `code` is null when no
 * farm answered: status 0 unreachable, -1 cancelled by the user.
 */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: ErrorCode | null = null,
  ) {
    super(message);
  }

  /** From a refusal's body: the farm's `{code, error}`, or the status line for anything else. */
  static fromAnswer(status: number, body: string, statusText = ''): ApiError {
    const answer = apiErrorSchema.safeParse(parseJson(body));
    if (answer.success) return new ApiError(answer.data.error, status, answer.data.code);
    return new ApiError(`HTTP ${status} ${statusText}`.trim(), status);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
