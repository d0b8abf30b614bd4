import { errorCatalogue, type ErrorCode } from '../protocol/index.ts';

/** A request the farm refuses: a code from the catalogue (src/protocol/errors.ts) and a message for a person. */
export class FarmError extends Error {
  readonly statusCode: number;

  constructor(
    readonly code: ErrorCode,
    message: string = errorCatalogue[code].title,
  ) {
    super(message);
    this.statusCode = errorCatalogue[code].status;
  }
}
