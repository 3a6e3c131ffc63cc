export {
  MandateError, ConfigError, UnavailableError, NotFoundError, ConflictError, ValidationError, OAuthError, oauth,
  toHttpError,
} from './errors.js';
export { parseDuration, formatDuration } from './duration.js';
export { endInput, endOfDay, parseEnd } from './ends.js';
export { resolveSecret, secretEquals, hashSecret, secretMatchesHash, bearerCredential } from './secrets.js';
export { systemClock, ManualClock, type Clock } from './clock.js';
export { newId, newSortableId, newTraceId, randomHex } from './ids.js';
export { createLogger, silentLogger, stripQuery, type Logger } from './logger.js';

export {
  loadConfigFile, buildConfig, type MandateConfig, type MandateConfigInput, type ToolConfig, type ActionConfig,
  type NhiConfig, type CredentialConfig, type TokenProfile,
} from './config/index.js';
export {
  Router, readBody, readJson, parseJsonObject, hasDuplicateKeys, sendJson, sendError, traceIdFrom,
  PayloadTooLargeError, type RequestContext,
} from './http.js';
export type { Bus, BusMessage, Subscription } from './ports/bus.js';
export type { ReplayStore, ReplayBatchStore, ReplayInsert } from './ports/replay.js';
export type { AuditSink, AuditInput, DurableAuditSink } from './ports/audit-sink.js';
export { canonicalJson, argsDigest, bodyDigest, httpCallDigest } from './canonical.js';
export {
  OutboundGuard, OutboundError, addressVerdict, allowListOf, type AddressKind, type HostResolver, type OutboundFailure,
} from './outbound.js';
export { ReplicatedMap, type SnapshotTicket } from './replicated-view.js';
export { challenge, challenges } from './www-authenticate.js';
export { BoundedMap } from './bounded-map.js';
