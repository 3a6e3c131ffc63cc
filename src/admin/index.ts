export { AdminAuth, adminCredentialStatus, type AdminPrincipal } from './auth.js';
export { AdminApi } from './api.js';
export { AdminCredentials } from './credentials.js';
export { mountAdminCredentialRoutes } from './credential-routes.js';
export type { AdminRole, AdminStore, AdminSessionResolver } from './ports.js';
