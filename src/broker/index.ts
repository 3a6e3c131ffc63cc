export { Broker, type BrokerDeps } from './broker.js';
export { mountBrokerRoutes, mountTokenProfileRoutes } from './admin-routes.js';
export { ToolCatalog } from './tool-catalog.js';
export type { BrokerStore, BrokerBatchStore, IssuedTokenRecord } from './ports.js';
