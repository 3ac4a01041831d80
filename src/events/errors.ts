/** Input that is not a usable audit event. `reason` is one line, fit for a log and a dead-letter record. */
export class BadInputError extends Error {
  readonly code = 'BAD_INPUT';
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'BadInputError';
  }
}
