export { Kek, parseKekMaterial, encryptPrivateJwk, decryptPrivateJwk, loadKek } from './kek.js';
export { KeyManager, type KeyManagerOptions, type PublicJwks } from './key-manager.js';
export { mountKeyRoutes } from './admin-routes.js';
