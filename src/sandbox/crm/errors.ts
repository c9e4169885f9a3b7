/**
 * Salesforce REST error objects and the one exception the sandbox's routes throw to answer with them.
 * Messages never carry field values from records: they name fields, objects and record ids only.
 */
export interface SfError {
  readonly message: string;
  readonly errorCode: string;
  readonly fields?: readonly string[];
}

/** An answer of the sandbox's REST API that is not a success: a status and the Salesforce error array. */
export class SfHttpError extends Error {
  override readonly name = 'SfHttpError';
  readonly status: number;
  readonly errors: readonly SfError[];

  constructor(status: number, errors: readonly SfError[]) {
    super(errors.map((e) => `${e.errorCode}: ${e.message}`).join('; '));
    this.status = status;
    this.errors = errors;
  }
}

export function sfError(errorCode: string, message: string, fields?: readonly string[]): SfError {
  return fields === undefined ? { message, errorCode } : { message, errorCode, fields };
}

export const notFound = (message = 'The requested resource does not exist'): SfHttpError =>
  new SfHttpError(404, [sfError('NOT_FOUND', message)]);

/** The per-record error shape of sObject Collections and composite results. */
export interface CollectionError {
  readonly statusCode: string;
  readonly message: string;
  readonly fields: readonly string[];
}

export function toCollectionError(error: SfError): CollectionError {
  return { statusCode: error.errorCode, message: error.message, fields: error.fields ?? [] };
}
