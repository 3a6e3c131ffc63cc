export { MandateError, ConfigError, UnavailableError, NotFoundError, ConflictError, ValidationError, OAuthError, oauth, toHttpError } from './errors.js';
export { parseDuration, formatDuration } from './duration.js';
export { endInput, endOfDay, parseEnd } from './ends.js';
export { resolveSecret, isSecretRef, secretEquals, hashSecret, secretMatchesHash, bearerCredential, SECRET_REF_RE } from './secrets.js';
export { systemClock, ManualClock, type Clock } from './clock.js';
export { newId, newSortableId, newTraceId, randomHex, randomUUID } from './ids.js';
export { createLogger, silentLogger, stripQuery, REDACT_PATHS, type Logger } from './logger.js';

export {
  configSchema, loadConfigFile, parseConfigText, buildConfig, deepFreeze,
  type MandateConfig, type MandateConfigInput, type ToolConfig, type ActionConfig, type NhiConfig, type CredentialConfig,
  type GrantConfig, type TrustConfig, type TokenProfile,
} from './config/index.js';
export {
  Router, readBody, readJson, readForm, parseJsonObject, hasDuplicateKeys, sendJson, sendError, traceIdFrom, PayloadTooLargeError,
  type RequestContext, type Handler,
} from './http.js';
export type { Bus, BusMessage, BusHandler, BusHealth, Subscription, SubscribeOptions } from './ports/bus.js';
export type { ReplayStore, ReplayBatchStore, ReplayInsert } from './ports/replay.js';
export type { AuditSink, AuditInput, DurableAuditSink } from './ports/audit-sink.js';
export { canonicalJson, argsDigest, bodyDigest, httpCallDigest } from './canonical.js';
export {
  OutboundGuard, OutboundError, addressVerdict, allowListOf, classifyAddress, cidrProblem, METADATA_ADDRESSES, NEVER_ALLOWED,
  type AddressKind, type AddressVerdict, type AllowList, type HostResolver, type OutboundFailure, type OutboundOptions, type OutboundRequest, type OutboundResponse, type OutboundTarget,
} from './outbound.js';
export { ReplicatedMap, type ReplicatedMapOptions, type SnapshotTicket } from './replicated-view.js';
export { challenge, challenges } from './www-authenticate.js';
export { BoundedMap } from './bounded-map.js';
