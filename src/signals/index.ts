export { Signals, SIGNAL_RAISED, KILL_REASON_PREFIX, type SignalEnforcer, type SignalInput, type SignalsDeps, type SignalsTxStore, type StagedSignals } from './signals.js';
export { SsfTransmitter, type TransmitterDeps, type TransmitterConfig, type SetSigner } from './transmitter.js';
export { SsfReceiver, defaultEventAction, inboundStreamId, type ReceiverDeps, type ReceiverConfig, type VerifiedSet } from './receiver.js';
export { SignalTimeline, mttrReport, type MttrReport, type LatencyStats, type PropagationStage } from './timeline.js';
export { mountSignalsRoutes, signalJson, restrictionJson } from './admin-routes.js';
export {
  EVENT, KNOWN_EVENTS, EVENTS_SUPPORTED, SET_TYP, SET_MEDIA_TYPE, DELIVERY_PUSH, DELIVERY_POLL, SetError, subjectProblem, canonicalJson,
  type SetErrorCode, type SubjectId,
} from './set.js';
export { SIGNAL_ACTIONS, SIGNAL_SEVERITIES } from './ports.js';
export type {
  SignalsStore, SignalRecord, SignalApplicationRecord, SignalAction, SignalSeverity, SignalStatus, SsfStreamRecord,
  SsfStreamDirection, SsfStreamStatus, SsfSubjectRecord, SsfEventRecord, SsfEventStatus, SetKeySource, JwsShapeCheck,
} from './ports.js';
