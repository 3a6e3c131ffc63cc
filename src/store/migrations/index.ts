import type { Migration } from 'kysely';
import * as m001 from './001_initial.js';
import * as m002 from './002_broker.js';
import * as m010 from './010_signals.js';
import * as m020 from './020_governance.js';
import * as m030 from './030_signal_applications.js';
import * as m040 from './040_risk_scores.js';
import * as m050 from './050_issued_token_parent.js';
import * as m051 from './051_credential_lifetimes.js';
import * as m055 from './055_approval_key.js';

/**
 * Every migration, by name. They run in name order (Store.migrate), so names start with a
 * zero-padded version. Listed statically (no filesystem globbing) so that they work from
 * dist/ and from a bundled package alike. Never edit a migration once released: add one.
 */
export const MIGRATIONS: Readonly<Record<string, Migration>> = Object.freeze({
  '001_initial': m001,
  '002_broker': m002,
  '010_signals': m010,
  '020_governance': m020,
  '030_signal_applications': m030,
  '040_risk_scores': m040,
  '050_issued_token_parent': m050,
  '051_credential_lifetimes': m051,
  '055_approval_key': m055,
});

