import { NotFoundError } from '../core/errors.js';
import type { SigningKeyRecord } from '../keys/ports.js';
import { guard, type StoreContext } from './context.js';
import { keyFromRow, keyToRow } from './rows.js';

/** The signing keys (KeyStore; its withLock is in locks.ts). */

export async function listSigningKeys(c: StoreContext): Promise<SigningKeyRecord[]> {
  return guard(c, { what: 'list signing keys' }, async () => {
    const rows = await c.db.selectFrom('signing_keys').selectAll().orderBy('created_at').orderBy('kid').execute();
    return rows.map(keyFromRow);
  });
}

export async function insertSigningKey(c: StoreContext, key: SigningKeyRecord): Promise<void> {
  await guard(c, { what: `insert signing key ${key.kid}`, unique: `signing key ${key.kid} already exists` }, async () => {
    await c.db.insertInto('signing_keys').values(keyToRow(key)).execute();
  });
}

/** Sets only the fields present in patch; throws NotFoundError for an unknown kid. */
export async function updateSigningKey(c: StoreContext, kid: string, patch: { retiresAt?: number | null; expiresAt?: number | null }): Promise<void> {
  await guard(c, { what: `update signing key ${kid}` }, async () => {
    const set: { retires_at?: number | null; expires_at?: number | null } = {};
    if ('retiresAt' in patch && patch.retiresAt !== undefined) set.retires_at = patch.retiresAt;
    if ('expiresAt' in patch && patch.expiresAt !== undefined) set.expires_at = patch.expiresAt;
    if (Object.keys(set).length === 0) {
      const exists = await c.db.selectFrom('signing_keys').select('kid').where('kid', '=', kid).executeTakeFirst();
      if (!exists) throw new NotFoundError(`signing key ${kid} does not exist`);
      return;
    }
    const r = await c.db.updateTable('signing_keys').set(set).where('kid', '=', kid).executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) throw new NotFoundError(`signing key ${kid} does not exist`);
  });
}

/** Deleting an unknown kid is not an error. */
export async function deleteSigningKey(c: StoreContext, kid: string): Promise<void> {
  await guard(c, { what: `delete signing key ${kid}` }, async () => {
    await c.db.deleteFrom('signing_keys').where('kid', '=', kid).execute();
  });
}
