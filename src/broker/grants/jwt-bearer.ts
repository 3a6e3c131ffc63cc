import { oauth } from '../../core/index.js';
import { denied } from '../refusals.js';
import { required } from '../request.js';
import { fromWorkload, workload, type Grant } from './subject.js';

/** RFC 7523 §2.1: a federated workload JWT as the authorization grant; its NHI is the subject. */
export const jwtBearer: Grant = async (s, req, clientId) => {
  const assertion = required(req.params, 'assertion');
  // RFC 7523 §3.1: an assertion that is not valid is invalid_grant (the federation errors are).
  const w = await workload(s, assertion);
  return fromWorkload(s, w, clientId, 'jwt_bearer', { invalid: oauth.invalidGrant, disabled: denied });
};
