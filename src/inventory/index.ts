export { Inventory, grantId, publicCredential, type InventoryDeps, type NhiDetail, type NhiInput, type GrantInput, type InventoryEventType } from './inventory.js';
export { credentialActiveAt, credentialEndsAt, firstCredentialEnd } from './credential-lifetime.js';
export { mountInventoryRoutes, nhiJson, grantJson, toolJson } from './admin-routes.js';
export type {
  NhiRecord, CredentialRecord, GrantRecord, ToolRecord, InventoryStore, NhiFilter, NhiClass, PermissionTier, NhiStatus, RecordSource, CredentialType,
} from './ports.js';
