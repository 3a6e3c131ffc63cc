export { configSchema, secretRef, duration } from './schema.js';
export type {
  MandateConfig, MandateConfigInput, ToolConfig, ActionConfig, NhiConfig, CredentialConfig, GrantConfig, TrustConfig,
  TokenProfile,
} from './schema.js';
export { loadConfigFile, parseConfigText, buildConfig, applyEnvOverrides, deepFreeze, MAX_CONFIG_BYTES } from './load.js';
