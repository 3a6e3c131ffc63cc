// `mandate lint`: the "no new long-lived secrets" check for CI (docs/ci-lint.md).
export { lintConfigText } from './config-lint.js';
export { scanFiles } from './scan.js';
export { toSarif } from './sarif.js';
export { readAtRef } from './git.js';
export { formatFindings } from './report.js';
export { LINT_RULES, LintUsageError, type Finding } from './rules.js';
