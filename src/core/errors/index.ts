export { ERROR_CATALOG, type ErrorCode, type ErrorSpec, errorSpec, isErrorCode } from './catalog.ts';
export { type ErrorDetails, isSluiceError, SluiceError, toSluiceError } from './sluice-error.ts';
