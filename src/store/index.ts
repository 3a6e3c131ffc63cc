export { Store, openStore, storeOptionsFromConfig, type StoreOptions, type StoreDialect } from './store.js';
export {
  GENESIS_HASH,
  type Database, type JsonText, type EpochMs, type IntBool,
  type NhisTable, type CredentialsTable, type GrantsTable, type ToolsTable, type TrustTable, type SigningKeysTable,
  type IssuedTokensTable, type RevocationsTable, type ApprovalsTable, type KillSwitchesTable, type AuditTable, type AuditHeadTable,
  type SsfStreamsTable, type SsfEventsTable, type SsfSubjectsTable, type RestrictionsTable, type SignalsTable, type DetectionsTable, type DetectionMutesTable, type PlaybookActionsTable, type ProgrammeSnapshotsTable, type AdminCredentialsTable,
  type ReplayTable,
} from './database.js';
export { MIGRATIONS } from './migrations/index.js';
