import { oauth } from '../../core/index.js';
import { denied } from '../refusals.js';
import { activeNhi, type Grant } from './subject.js';

/** RFC 6749 §4.4: the authenticated client is the subject (§4.4.2: client authentication is required). */
export const clientCredentials: Grant = async (s, _req, clientId) => {
  if (!clientId) throw oauth.invalidClient('client_credentials needs client authentication (private_key_jwt)');
  const nhi = await activeNhi(s, clientId, { invalid: () => oauth.invalidClient('unknown client'), disabled: denied });
  return { nhi, clientId, runId: null, via: 'client_credentials' };
};
