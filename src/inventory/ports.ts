/** What inventory needs from storage. Timestamps are epoch ms. Implemented by store/. */
export type NhiClass = 'agent' | 'workload' | 'runner' | 'tool';
export type PermissionTier = 'read' | 'write' | 'admin';
export type NhiStatus = 'active' | 'disabled';
/** Where a record came from: the GitOps file (`config`) or the admin API (`api`). */
export type RecordSource = 'config' | 'api';
export type CredentialType = 'federated' | 'private_key_jwt' | 'static_secret';

export interface NhiRecord {
  id: string;
  class: NhiClass;
  owner: string;
  system: string;
  environment: string;
  tier: PermissionTier;
  status: NhiStatus;
  description: string | null;
  mayAct: string[];
  source: RecordSource;
  createdAt: number;
  updatedAt: number;
}

export interface CredentialRecord {
  id: string;
  nhiId: string;
  type: CredentialType;
  /** Trust entry name (federated). */
  trust: string | null;
  /** Subject pattern (federated). */
  subject: string | null;
  /** Type-specific data that is not secret: a JWKS, a jwks_uri, a secret *reference*. */
  data: Record<string, unknown>;
  exceptionTicket: string | null;
  exceptionExpiresAt: number | null;
  source: RecordSource;
  createdAt: number;
  expiresAt: number | null;
  lastRotatedAt: number | null;
}

export interface GrantRecord {
  id: string;
  nhiId: string;
  toolId: string;
  actions: string[];
  changeRef: string | null;
  source: RecordSource;
  expiresAt: number | null;
  createdAt: number;
  updatedAt: number;
  lastUsedAt: number | null;
}

export interface ToolRecord {
  id: string;
  kind: 'http' | 'mcp';
  upstream: string;
  description: string | null;
  /** The tool's config as declared (actions, tiers; the credential only as a reference). */
  config: Record<string, unknown>;
  source: RecordSource;
  createdAt: number;
  updatedAt: number;
}

export interface NhiFilter {
  class?: NhiClass;
  owner?: string;
  environment?: string;
  tier?: PermissionTier;
  status?: NhiStatus;
  /** Only NHIs holding at least one credential of this type. */
  credentialType?: CredentialType;
  /** Case-insensitive substring of id, owner, system or description. */
  search?: string;
}

export interface InventoryStore {
  listNhis(filter?: NhiFilter): Promise<NhiRecord[]>;
  getNhi(id: string): Promise<NhiRecord | undefined>;
  /** Inserts or replaces by id. */
  upsertNhi(nhi: NhiRecord): Promise<void>;
  listCredentials(nhiId?: string): Promise<CredentialRecord[]>;
  upsertCredential(cred: CredentialRecord): Promise<void>;
  deleteCredential(id: string): Promise<boolean>;
  listGrants(filter?: { nhiId?: string; toolId?: string }): Promise<GrantRecord[]>;
  getGrant(id: string): Promise<GrantRecord | undefined>;
  /** Inserts or replaces by id; (nhiId, toolId) is unique. */
  upsertGrant(grant: GrantRecord): Promise<void>;
  deleteGrant(id: string): Promise<boolean>;
  touchGrant(id: string, at: number): Promise<void>;
  listTools(): Promise<ToolRecord[]>;
  getTool(id: string): Promise<ToolRecord | undefined>;
  upsertTool(tool: ToolRecord): Promise<void>;
  deleteTool(id: string): Promise<boolean>;
}
