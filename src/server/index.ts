export { Readiness, startHttpServer, type RunningServer } from './http-server.js';
export { Metrics } from './metrics.js';
export { mountOps } from './ops.js';
