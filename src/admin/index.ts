export { AdminAuth, ROLE_RANK, adminCredentialStatus, type AdminPrincipal, type AdminCredentialStatus } from './auth.js';
export { AdminApi, ADMIN_PREFIX, type AdminRequest, type AdminRoute } from './api.js';
export { AdminCredentials, ADMIN_CREDENTIAL_SUBJECT, adminCredentialJson, type AdminCredentialView, type AdminCredentialsDeps } from './credentials.js';
export { mountAdminCredentialRoutes } from './credential-routes.js';
export type { AdminRole, AdminStore, AdminCredentialRecord, AdminSessionResolver } from './ports.js';
