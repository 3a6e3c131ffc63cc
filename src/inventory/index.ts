export { Inventory, grantId } from './inventory.js';
export { credentialActiveAt, firstCredentialEnd } from './credential-lifetime.js';
export { mountInventoryRoutes } from './admin-routes.js';
export type { NhiRecord, CredentialRecord, GrantRecord, InventoryStore } from './ports.js';
