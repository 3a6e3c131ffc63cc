export { AdminAuth, ROLE_RANK, type AdminPrincipal } from './auth.js';
export { AdminApi, ADMIN_PREFIX, type AdminRequest, type AdminRoute } from './api.js';
export type { AdminRole, AdminStore, AdminCredentialRecord, AdminSessionResolver } from './ports.js';
