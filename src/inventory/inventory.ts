import { createHash } from 'node:crypto';
import {
  ConflictError, NotFoundError, ValidationError, endOfDay, newId,
  type AuditSink, type Bus, type Clock, type Logger, type MandateConfig, type NhiConfig, type CredentialConfig,
} from '../core/index.js';
import type {
  CredentialRecord, GrantRecord, InventoryStore, NhiFilter, NhiRecord, NhiStatus, RecordSource, ToolRecord,
} from './ports.js';

export interface InventoryDeps {
  store: InventoryStore;
  audit: AuditSink;
  bus: Bus;
  clock: Clock;
  logger: Logger;
}

export interface NhiDetail {
  nhi: NhiRecord;
  credentials: CredentialRecord[];
  grants: GrantRecord[];
}

export interface NhiInput {
  id: string;
  class: NhiRecord['class'];
  owner: string;
  system: string;
  environment: string;
  tier: NhiRecord['tier'];
  description?: string | null;
  mayAct?: string[];
}

export interface GrantInput {
  nhiId: string;
  toolId: string;
  actions: string[];
  changeRef?: string | null;
  expiresAt?: number | null;
}

/** Every change the inventory makes is audited and published under `inventory.<type>`. */
export type InventoryEventType =
  | 'nhi.created' | 'nhi.updated' | 'nhi.disabled' | 'nhi.enabled'
  | 'credential.added' | 'credential.removed'
  | 'grant.added' | 'grant.changed' | 'grant.removed'
  | 'tool.registered' | 'tool.updated' | 'tool.removed';

/**
 * The inventory of NHIs, their credentials, tools and grants. Config (GitOps) and the admin
 * API both write here; records remember their source so that a config sync never deletes
 * what an operator added through the API, and an operator's disable survives a restart.
 */
export class Inventory {
  constructor(private readonly deps: InventoryDeps) {}

  listNhis(filter?: NhiFilter): Promise<NhiRecord[]> {
    return this.deps.store.listNhis(filter);
  }

  async getNhi(id: string): Promise<NhiDetail> {
    const nhi = await this.deps.store.getNhi(id);
    if (!nhi) throw new NotFoundError(`no NHI with id "${id}"`);
    const [credentials, grants] = await Promise.all([this.deps.store.listCredentials(id), this.deps.store.listGrants({ nhiId: id })]);
    return { nhi, credentials, grants };
  }

  listTools(): Promise<ToolRecord[]> {
    return this.deps.store.listTools();
  }

  async getTool(id: string): Promise<ToolRecord> {
    const t = await this.deps.store.getTool(id);
    if (!t) throw new NotFoundError(`no tool with id "${id}"`);
    return t;
  }

  listGrants(filter?: { nhiId?: string; toolId?: string }): Promise<GrantRecord[]> {
    return this.deps.store.listGrants(filter);
  }

  listCredentials(nhiId?: string): Promise<CredentialRecord[]> {
    return this.deps.store.listCredentials(nhiId);
  }

  /** Adds an NHI through the admin API (source `api`). */
  async addNhi(input: NhiInput, actor: string): Promise<NhiRecord> {
    if (await this.deps.store.getNhi(input.id)) throw new ConflictError(`an NHI with id "${input.id}" exists`);
    const now = this.deps.clock.now();
    const nhi: NhiRecord = {
      ...input,
      description: input.description ?? null,
      mayAct: input.mayAct ?? [],
      status: 'active',
      source: 'api',
      createdAt: now,
      updatedAt: now,
    };
    await this.deps.store.upsertNhi(nhi);
    await this.emit('nhi.created', actor, nhi.id, null, { nhi: publicNhi(nhi) });
    return nhi;
  }

  async updateNhi(id: string, patch: Partial<Omit<NhiInput, 'id'>>, actor: string): Promise<NhiRecord> {
    const { nhi } = await this.getNhi(id);
    const next: NhiRecord = { ...nhi, ...stripUndefined(patch), updatedAt: this.deps.clock.now() } as NhiRecord;
    await this.deps.store.upsertNhi(next);
    await this.emit('nhi.updated', actor, id, null, { before: publicNhi(nhi), after: publicNhi(next) });
    return next;
  }

  /** Disables or re-enables an NHI. Disabling is what the kill switch and playbooks call. */
  async setStatus(id: string, status: NhiStatus, actor: string, reason: string): Promise<NhiRecord> {
    const { nhi } = await this.getNhi(id);
    if (nhi.status === status) return nhi;
    const next = { ...nhi, status, updatedAt: this.deps.clock.now() };
    await this.deps.store.upsertNhi(next);
    await this.emit(status === 'disabled' ? 'nhi.disabled' : 'nhi.enabled', actor, id, null, { reason });
    return next;
  }

  /**
   * Records a credential. A static secret is accepted only as an exception with a ticket and
   * an end date in the future; everything else should federate.
   */
  async addCredential(cred: Omit<CredentialRecord, 'id' | 'source' | 'createdAt'> & { createdAt?: number }, actor: string): Promise<CredentialRecord> {
    await this.getNhi(cred.nhiId);
    const now = this.deps.clock.now();
    if (cred.type === 'static_secret') {
      if (!cred.exceptionTicket || !cred.exceptionExpiresAt) {
        throw new ValidationError('a static secret is only recorded as an exception: give exception_ticket and exception_expires');
      }
      if (cred.exceptionExpiresAt <= now) throw new ValidationError('the exception has already ended: give a future exception_expires');
    }
    if (cred.expiresAt !== null && cred.expiresAt <= now) throw new ValidationError('the credential would already have ended: give a future expires');
    const rec: CredentialRecord = { ...cred, id: newId('cred'), source: 'api', createdAt: cred.createdAt ?? now };
    await this.deps.store.upsertCredential(rec);
    await this.emit('credential.added', actor, rec.nhiId, null, { credential: publicCredential(rec) });
    return rec;
  }

  async removeCredential(id: string, actor: string): Promise<void> {
    const all = await this.deps.store.listCredentials();
    const cred = all.find((c) => c.id === id);
    if (!cred) throw new NotFoundError(`no credential with id "${id}"`);
    await this.deps.store.deleteCredential(id);
    await this.emit('credential.removed', actor, cred.nhiId, null, { credential: publicCredential(cred) });
  }

  /** Adds or widens a grant (NHI → tool → actions). Actions must be declared by the tool. */
  async addGrant(input: GrantInput, actor: string, source: RecordSource = 'api'): Promise<GrantRecord> {
    await this.getNhi(input.nhiId);
    const tool = await this.getTool(input.toolId);
    const declared = new Set(((tool.config.actions as { name: string }[] | undefined) ?? []).map((a) => a.name));
    const unknown = input.actions.filter((a) => a !== '*' && !declared.has(a));
    if (unknown.length) throw new ValidationError(`tool "${tool.id}" declares no action ${unknown.map((a) => `"${a}"`).join(', ')}`);
    const existing = (await this.deps.store.listGrants({ nhiId: input.nhiId, toolId: input.toolId }))[0];
    const now = this.deps.clock.now();
    const grant: GrantRecord = {
      id: existing?.id ?? grantId(input.nhiId, input.toolId),
      nhiId: input.nhiId,
      toolId: input.toolId,
      actions: [...new Set(input.actions)].sort(),
      changeRef: input.changeRef ?? null,
      source,
      expiresAt: input.expiresAt ?? null,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
      lastUsedAt: existing?.lastUsedAt ?? null,
    };
    await this.deps.store.upsertGrant(grant);
    const added = grant.actions.filter((a) => !existing?.actions.includes(a));
    await this.emit(existing ? 'grant.changed' : 'grant.added', actor, grant.nhiId, grant.toolId, {
      grant_id: grant.id, actions: grant.actions, added_actions: added,
      removed_actions: existing?.actions.filter((a) => !grant.actions.includes(a)) ?? [],
      source, change_ref: grant.changeRef,
    });
    return grant;
  }

  async removeGrant(id: string, actor: string): Promise<void> {
    const g = await this.deps.store.getGrant(id);
    if (!g) throw new NotFoundError(`no grant with id "${id}"`);
    await this.deps.store.deleteGrant(id);
    await this.emit('grant.removed', actor, g.nhiId, g.toolId, { grant_id: id, actions: g.actions });
  }

  /**
   * Makes the store match the config for everything that came from config. Records added
   * through the API are left alone. An NHI the operator disabled stays disabled (config
   * `active` does not re-enable it: that would undo a kill switch on restart); an NHI removed
   * from config is disabled, not deleted, so its history stays.
   */
  async syncFromConfig(cfg: Readonly<MandateConfig>, actor = 'config'): Promise<{ changes: number }> {
    const { store, clock } = this.deps;
    const now = clock.now();
    let changes = 0;

    const existingTools = new Map((await store.listTools()).map((t) => [t.id, t]));
    for (const t of cfg.tools) {
      // The tool's credential is kept only as its reference (env:/file:), never resolved here.
      const { credential, ...declared } = t;
      const rec: ToolRecord = {
        id: t.id, kind: t.kind, upstream: t.upstream, description: t.description ?? null,
        config: JSON.parse(JSON.stringify({
          ...declared,
          credential: credential ? { type: credential.type, name: credential.name ?? null, username: credential.username ?? null, ref: credential.value } : null,
        })) as Record<string, unknown>,
        source: 'config', createdAt: existingTools.get(t.id)?.createdAt ?? now, updatedAt: now,
      };
      const prev = existingTools.get(t.id);
      if (!prev || !sameJson(strip(prev), strip(rec))) {
        await store.upsertTool(rec);
        await this.emit(prev ? 'tool.updated' : 'tool.registered', actor, null, t.id, { upstream: t.upstream, kind: t.kind });
        changes++;
      }
      existingTools.delete(t.id);
    }
    for (const stale of existingTools.values()) {
      if (stale.source !== 'config') continue;
      await store.deleteTool(stale.id);
      await this.emit('tool.removed', actor, null, stale.id, { reason: 'removed_from_config' });
      changes++;
    }

    const existingNhis = new Map((await store.listNhis()).map((n) => [n.id, n]));
    for (const n of cfg.nhis) {
      const prev = existingNhis.get(n.id);
      const rec = nhiFromConfig(n, prev, now);
      if (!prev) {
        await store.upsertNhi(rec);
        await this.emit('nhi.created', actor, n.id, null, { nhi: publicNhi(rec), source: 'config' });
        changes++;
      } else if (!sameJson(publicNhi(prev), publicNhi(rec)) || prev.source !== 'config') {
        await store.upsertNhi(rec);
        await this.emit(rec.status !== prev.status ? 'nhi.disabled' : 'nhi.updated', actor, n.id, null, { before: publicNhi(prev), after: publicNhi(rec) });
        changes++;
      }
      changes += await this.syncCredentials(n, now, actor);
      existingNhis.delete(n.id);
    }
    for (const stale of existingNhis.values()) {
      if (stale.source !== 'config' || stale.status === 'disabled') continue;
      await store.upsertNhi({ ...stale, status: 'disabled', updatedAt: now });
      await this.emit('nhi.disabled', actor, stale.id, null, { reason: 'removed_from_config' });
      changes++;
    }

    const desired = new Map(cfg.grants.map((g) => [grantId(g.nhi, g.tool), g]));
    for (const g of await store.listGrants()) {
      if (g.source === 'config' && !desired.has(g.id)) {
        await store.deleteGrant(g.id);
        await this.emit('grant.removed', actor, g.nhiId, g.toolId, { grant_id: g.id, actions: g.actions, reason: 'removed_from_config' });
        changes++;
      }
    }
    for (const [id, g] of desired) {
      const prev = await store.getGrant(id);
      const actions = [...new Set(g.actions)].sort();
      const expiresAt = g.expires ? endOfDay(g.expires) : null;
      if (prev && prev.source === 'config' && sameJson(prev.actions, actions) && prev.changeRef === (g.change_ref ?? null) && prev.expiresAt === expiresAt) continue;
      await store.upsertGrant({
        id, nhiId: g.nhi, toolId: g.tool, actions, changeRef: g.change_ref ?? null, source: 'config', expiresAt,
        createdAt: prev?.createdAt ?? now, updatedAt: now, lastUsedAt: prev?.lastUsedAt ?? null,
      });
      await this.emit(prev ? 'grant.changed' : 'grant.added', actor, g.nhi, g.tool, {
        grant_id: id, actions, added_actions: actions.filter((a) => !prev?.actions.includes(a)),
        removed_actions: prev?.actions.filter((a) => !actions.includes(a)) ?? [], source: 'config', change_ref: g.change_ref ?? null,
      });
      changes++;
    }
    return { changes };
  }

  private async syncCredentials(n: NhiConfig, now: number, actor: string): Promise<number> {
    const { store } = this.deps;
    let changes = 0;
    const desired = new Map(n.credentials.map((c) => {
      const rec = credentialFromConfig(n.id, c, now);
      return [rec.id, rec] as const;
    }));
    for (const prev of await store.listCredentials(n.id)) {
      if (prev.source !== 'config') continue;
      if (desired.has(prev.id)) {
        desired.delete(prev.id);
        continue;
      }
      await store.deleteCredential(prev.id);
      await this.emit('credential.removed', actor, n.id, null, { credential: publicCredential(prev), reason: 'removed_from_config' });
      changes++;
    }
    for (const rec of desired.values()) {
      await store.upsertCredential(rec);
      await this.emit('credential.added', actor, n.id, null, { credential: publicCredential(rec), source: 'config' });
      changes++;
    }
    return changes;
  }

  private async emit(type: InventoryEventType, actor: string, subject: string | null, tool: string | null, data: Record<string, unknown>): Promise<void> {
    this.deps.audit.record({ type, actor, subject, tool, data });
    // Not awaited: a change is answered once it is durable (the store holds it, the audit log
    // has its record), and a NATS outage must not hold the answer. The bus retries the publish
    // for its timeout; other instances catch up from the store (it is the truth) in any case.
    void this.deps.bus.publish(`inventory.${type}`, { ...data, type, actor, nhi: subject, tool, at: this.deps.clock.now() })
      .catch((err: unknown) => this.deps.logger.warn({ err, type }, 'inventory change not published on the bus'));
  }
}

function nhiFromConfig(n: NhiConfig, prev: NhiRecord | undefined, now: number): NhiRecord {
  return {
    id: n.id, class: n.class, owner: n.owner, system: n.system, environment: n.environment, tier: n.tier,
    status: n.status === 'disabled' || prev?.status === 'disabled' ? 'disabled' : 'active',
    description: n.description ?? null, mayAct: [...n.may_act], source: 'config',
    createdAt: prev?.createdAt ?? now, updatedAt: now,
  };
}

/** Config credentials get ids derived from their content, so a re-sync recognises them. */
function credentialFromConfig(nhiId: string, c: CredentialConfig, now: number): CredentialRecord {
  const base = { nhiId, source: 'config' as const, exceptionTicket: null, exceptionExpiresAt: null, expiresAt: null, lastRotatedAt: null, trust: null, subject: null };
  let rec: Omit<CredentialRecord, 'id'>;
  switch (c.type) {
    case 'federated':
      rec = {
        ...base, type: c.type, trust: c.trust, subject: c.subject, data: {}, createdAt: c.created ? Date.parse(c.created) : now,
        expiresAt: c.expires ? endOfDay(c.expires) : null,
      };
      break;
    case 'private_key_jwt':
      rec = {
        ...base, type: c.type, data: c.jwks ? { jwks: c.jwks } : { jwks_uri: c.jwks_uri }, createdAt: c.created ? Date.parse(c.created) : now,
        expiresAt: c.expires ? endOfDay(c.expires) : null, lastRotatedAt: c.last_rotated ? Date.parse(c.last_rotated) : null,
      };
      break;
    case 'static_secret':
      rec = {
        ...base, type: c.type, data: { secret_ref: c.secret, exception_reason: c.exception.reason ?? null },
        exceptionTicket: c.exception.ticket, exceptionExpiresAt: endOfDay(c.exception.expires),
        createdAt: c.created ? Date.parse(c.created) : now, lastRotatedAt: c.last_rotated ? Date.parse(c.last_rotated) : null,
      };
      break;
  }
  const fingerprint = createHash('sha256').update(JSON.stringify([nhiId, c])).digest('base64url').slice(0, 22);
  return { ...rec, id: `cfg_${fingerprint}` };
}

export function grantId(nhiId: string, toolId: string): string {
  return `grant_${nhiId}_${toolId}`;
}

function publicNhi(n: NhiRecord) {
  return { id: n.id, class: n.class, owner: n.owner, system: n.system, environment: n.environment, tier: n.tier, status: n.status, description: n.description, may_act: n.mayAct };
}

/** What of a credential may be shown: never a secret, only the reference to it. */
export function publicCredential(c: CredentialRecord) {
  return {
    id: c.id, nhi: c.nhiId, type: c.type, trust: c.trust, subject: c.subject, source: c.source,
    exception_ticket: c.exceptionTicket, exception_expires_at: c.exceptionExpiresAt, created_at: c.createdAt,
    expires_at: c.expiresAt, last_rotated_at: c.lastRotatedAt,
  };
}

function strip(t: ToolRecord) {
  return { kind: t.kind, upstream: t.upstream, description: t.description, config: t.config, source: t.source };
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
