export type { KeyStore, SigningKeyRecord } from './ports.js';
export {
  Kek, KEK_BYTES, DEFAULT_DEV_KEK_PATH, parseKekMaterial, encryptPrivateJwk, decryptPrivateJwk, sealedKekId, loadKek,
  type LoadKekOptions, type LoadedKek,
} from './kek.js';
export {
  KeyManager,
  type KeyManagerOptions, type SigningAlgorithm, type SigningKey, type PublicJwks, type RotationResult, type SignHeader,
} from './key-manager.js';
export { mountKeyRoutes, type KeyRouteDeps } from './admin-routes.js';
