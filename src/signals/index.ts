export { Signals, type SignalInput } from './signals.js';
export { SsfTransmitter } from './transmitter.js';
export { SsfReceiver } from './receiver.js';
export { SignalTimeline, mttrReport } from './timeline.js';
export { mountSignalsRoutes } from './admin-routes.js';
export type { SignalsStore, SignalRecord, SignalApplicationRecord } from './ports.js';
