/** A request the farm refuses, with the HTTP status that says why. */
export class FarmError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}
