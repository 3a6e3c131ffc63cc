import type { AdminCredentialRecord } from '../admin/ports.js';
import { guard, type StoreContext } from './context.js';
import { adminFromRow, adminToRow } from './rows.js';

/** The admin API's credentials (AdminStore; its withLock is in locks.ts). */

export async function countAdminCredentials(c: StoreContext): Promise<number> {
  return guard(c, { what: 'count admin credentials' }, async () => {
    const r = await c.db.selectFrom('admin_credentials').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  });
}

export async function insertAdminCredential(c: StoreContext, rec: AdminCredentialRecord): Promise<void> {
  await guard(c, { what: `insert admin credential ${rec.id}`, unique: `admin credential ${rec.id} already exists` }, async () => {
    await c.db.insertInto('admin_credentials').values(adminToRow(rec)).execute();
  });
}

export async function getAdminCredential(c: StoreContext, id: string): Promise<AdminCredentialRecord | undefined> {
  return guard(c, { what: `get admin credential ${id}` }, async () => {
    const row = await c.db.selectFrom('admin_credentials').selectAll().where('id', '=', id).executeTakeFirst();
    return row && adminFromRow(row);
  });
}

export async function listAdminCredentials(c: StoreContext): Promise<AdminCredentialRecord[]> {
  return guard(c, { what: 'list admin credentials' }, async () => {
    const rows = await c.db.selectFrom('admin_credentials').selectAll().orderBy('created_at').orderBy('id').execute();
    return rows.map(adminFromRow);
  });
}

/** Moves last_used_at forward only. */
export async function touchAdminCredential(c: StoreContext, id: string, at: number): Promise<void> {
  await guard(c, { what: `touch admin credential ${id}` }, async () => {
    await c.db
      .updateTable('admin_credentials')
      .set({ last_used_at: at })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at)]))
      .execute();
  });
}

/** True when the credential exists (it is revoked afterwards, whether or not it was before; the first revocation time is kept). */
export async function revokeAdminCredential(c: StoreContext, id: string, at: number): Promise<boolean> {
  return guard(c, { what: `revoke admin credential ${id}` }, async () => {
    const r = await c.db.updateTable('admin_credentials')
      .set((eb) => ({ disabled: 1, revoked_at: eb.fn.coalesce('revoked_at', eb.val(at)) }))
      .where('id', '=', id).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  });
}

/** True when a credential that is not revoked got the new end. */
export async function setAdminCredentialExpiry(c: StoreContext, id: string, expiresAt: number): Promise<boolean> {
  return guard(c, { what: `set the expiry of admin credential ${id}` }, async () => {
    const r = await c.db.updateTable('admin_credentials').set({ expires_at: expiresAt })
      .where('id', '=', id).where('disabled', '=', 0).where('revoked_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  });
}
