import { sql, type Expression, type SqlBool } from 'kysely';
import type { CredentialRecord, GrantRecord, NhiFilter, NhiRecord, ToolRecord } from '../inventory/ports.js';
import { excludedSet, guard, type StoreContext } from './context.js';
import { credentialFromRow, credentialToRow, grantFromRow, grantToRow, nhiFromRow, nhiToRow, toolFromRow, toolToRow } from './rows.js';

/** The inventory's tables (InventoryStore): NHIs, their credentials, tools, and the grants of tools to NHIs. */

export async function listNhis(c: StoreContext, filter: NhiFilter = {}): Promise<NhiRecord[]> {
  return guard(c, { what: 'list nhis' }, async () => {
    let q = c.db.selectFrom('nhis').selectAll();
    if (filter.class !== undefined) q = q.where('class', '=', filter.class);
    if (filter.owner !== undefined) q = q.where('owner', '=', filter.owner);
    if (filter.environment !== undefined) q = q.where('environment', '=', filter.environment);
    if (filter.tier !== undefined) q = q.where('tier', '=', filter.tier);
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    if (filter.credentialType !== undefined) {
      const type = filter.credentialType;
      q = q.where('id', 'in', (eb) => eb.selectFrom('credentials').select('nhi_id').where('type', '=', type));
    }
    if (filter.search !== undefined && filter.search !== '') {
      const pattern = `%${escapeLike(filter.search.toLowerCase())}%`;
      // lower() on both sides: LIKE is case-insensitive on SQLite (ASCII) but not on
      // PostgreSQL. ESCAPE is explicit because SQLite has no default escape character.
      const like = (col: 'id' | 'owner' | 'system' | 'description'): Expression<SqlBool> =>
        sql<SqlBool>`lower(${sql.ref(col)}) like ${pattern} escape '\\'`;
      q = q.where((eb) => eb.or([like('id'), like('owner'), like('system'), like('description')]));
    }
    const rows = await q.orderBy('id').execute();
    return rows.map(nhiFromRow);
  });
}

export async function getNhi(c: StoreContext, id: string): Promise<NhiRecord | undefined> {
  return guard(c, { what: `get nhi ${id}` }, async () => {
    const row = await c.db.selectFrom('nhis').selectAll().where('id', '=', id).executeTakeFirst();
    return row && nhiFromRow(row);
  });
}

export async function upsertNhi(c: StoreContext, nhi: NhiRecord): Promise<void> {
  await guard(c, { what: `upsert nhi ${nhi.id}` }, async () => {
    const row = nhiToRow(nhi);
    await c.db.insertInto('nhis').values(row).onConflict((oc) => oc.column('id').doUpdateSet(excludedSet(row, ['id']))).execute();
  });
}

export async function listCredentials(c: StoreContext, nhiId?: string): Promise<CredentialRecord[]> {
  return guard(c, { what: 'list credentials' }, async () => {
    let q = c.db.selectFrom('credentials').selectAll();
    if (nhiId !== undefined) q = q.where('nhi_id', '=', nhiId);
    const rows = await q.orderBy('nhi_id').orderBy('id').execute();
    return rows.map(credentialFromRow);
  });
}

export async function upsertCredential(c: StoreContext, cred: CredentialRecord): Promise<void> {
  await guard(c, 
    { what: `upsert credential ${cred.id}`, foreignKey: `nhi ${cred.nhiId} does not exist` },
    async () => {
      const row = credentialToRow(cred);
      await c.db
        .insertInto('credentials')
        .values(row)
        .onConflict((oc) => oc.column('id').doUpdateSet(excludedSet(row, ['id'])))
        .execute();
    },
  );
}

export async function deleteCredential(c: StoreContext, id: string): Promise<boolean> {
  return guard(c, { what: `delete credential ${id}` }, async () => {
    const r = await c.db.deleteFrom('credentials').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  });
}

export async function listGrants(c: StoreContext, filter: { nhiId?: string; toolId?: string } = {}): Promise<GrantRecord[]> {
  return guard(c, { what: 'list grants' }, async () => {
    let q = c.db.selectFrom('grants').selectAll();
    if (filter.nhiId !== undefined) q = q.where('nhi_id', '=', filter.nhiId);
    if (filter.toolId !== undefined) q = q.where('tool_id', '=', filter.toolId);
    const rows = await q.orderBy('nhi_id').orderBy('tool_id').execute();
    return rows.map(grantFromRow);
  });
}

export async function getGrant(c: StoreContext, id: string): Promise<GrantRecord | undefined> {
  return guard(c, { what: `get grant ${id}` }, async () => {
    const row = await c.db.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst();
    return row && grantFromRow(row);
  });
}

export async function upsertGrant(c: StoreContext, grant: GrantRecord): Promise<void> {
  await guard(c, 
    {
      what: `upsert grant ${grant.id}`,
      // Only the id conflict is an upsert; another grant for the same pair is a conflict.
      unique: `a grant of tool ${grant.toolId} to nhi ${grant.nhiId} already exists under another id`,
      foreignKey: `nhi ${grant.nhiId} or tool ${grant.toolId} does not exist`,
    },
    async () => {
      const row = grantToRow(grant);
      await c.db.insertInto('grants').values(row).onConflict((oc) => oc.column('id').doUpdateSet(excludedSet(row, ['id']))).execute();
    },
  );
}

export async function deleteGrant(c: StoreContext, id: string): Promise<boolean> {
  return guard(c, { what: `delete grant ${id}` }, async () => {
    const r = await c.db.deleteFrom('grants').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  });
}

/** Moves last_used_at forward only, so that late or concurrent touches never move it back. */
export async function touchGrant(c: StoreContext, id: string, at: number): Promise<void> {
  await guard(c, { what: `touch grant ${id}` }, async () => {
    await c.db
      .updateTable('grants')
      .set({ last_used_at: at })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at)]))
      .execute();
  });
}

export async function listTools(c: StoreContext): Promise<ToolRecord[]> {
  return guard(c, { what: 'list tools' }, async () => {
    const rows = await c.db.selectFrom('tools').selectAll().orderBy('id').execute();
    return rows.map(toolFromRow);
  });
}

export async function getTool(c: StoreContext, id: string): Promise<ToolRecord | undefined> {
  return guard(c, { what: `get tool ${id}` }, async () => {
    const row = await c.db.selectFrom('tools').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toolFromRow(row);
  });
}

export async function upsertTool(c: StoreContext, tool: ToolRecord): Promise<void> {
  await guard(c, { what: `upsert tool ${tool.id}` }, async () => {
    const row = toolToRow(tool);
    await c.db.insertInto('tools').values(row).onConflict((oc) => oc.column('id').doUpdateSet(excludedSet(row, ['id']))).execute();
  });
}

/** Deletes the tool and (by cascade) its grants. */
export async function deleteTool(c: StoreContext, id: string): Promise<boolean> {
  return guard(c, { what: `delete tool ${id}` }, async () => {
    const r = await c.db.deleteFrom('tools').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  });
}

/** Escapes LIKE wildcards so that a search for "a_b" or "50%" matches literally. */
function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}
