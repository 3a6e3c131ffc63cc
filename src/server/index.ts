export { Readiness, startHttpServer, type HttpServerOptions, type RunningServer } from './http-server.js';
export { Metrics } from './metrics.js';
export { mountOps, type OpsDeps } from './ops.js';
