export { Store } from './store.js';
export { openStore, storeOptionsFromConfig, type StoreOptions } from './open.js';
export { GENESIS_HASH } from './database.js';
export { MIGRATIONS } from './migrations/index.js';
