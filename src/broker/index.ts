export { Broker } from './broker.js';
export { mountBrokerRoutes, mountTokenProfileRoutes } from './admin-routes.js';
