// `mandate lint`: the "no new long-lived secrets" check for CI (docs/ci-lint.md).
export { lintConfigText, type LintConfigOptions } from './config-lint.js';
export { scanFiles, MAX_SCAN_BYTES, type ScanOptions, type ScanResult } from './scan.js';
export { toSarif, SARIF_SCHEMA_URI, type SarifOptions } from './sarif.js';
export { readAtRef } from './git.js';
export { formatFindings } from './report.js';
export { LINT_RULES, LINT_DOCS_URL, LintUsageError, type Finding, type LintRule, type LintRuleId, type LintLevel } from './rules.js';
