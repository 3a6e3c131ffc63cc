import { LINT_DOCS_URL, LINT_RULES, type Finding } from './rules.js';

/** The schema URI of the OASIS standard (2.1.0 with Errata 01), as code-scanning tools expect it. */
export const SARIF_SCHEMA_URI = 'https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json';

export interface SarifOptions {
  /** Mandate's version, for `tool.driver.version`. */
  version?: string;
  /** Where the rules are documented (an absolute URI; `#<rule id>` is appended). */
  docsUrl?: string;
}

/**
 * A SARIF 2.1.0 log of the findings, one run, every rule declared (so a rule that found
 * nothing still shows in code scanning's rule list). Artifact URIs are the findings' file
 * paths: relative to the working directory, which in CI is the repository root, as GitHub
 * code scanning resolves them.
 */
export function toSarif(findings: readonly Finding[], opts: SarifOptions = {}): Record<string, unknown> {
  const docs = opts.docsUrl ?? LINT_DOCS_URL;
  const index = new Map(LINT_RULES.map((r, i) => [r.id, i]));
  return {
    $schema: SARIF_SCHEMA_URI,
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'mandate-lint',
            ...(opts.version ? { version: opts.version } : {}),
            informationUri: docs,
            rules: LINT_RULES.map((r) => ({
              id: r.id,
              shortDescription: { text: r.short },
              fullDescription: { text: r.full },
              help: { text: r.full },
              helpUri: `${docs}#${r.id}`,
              defaultConfiguration: { level: r.level },
            })),
          },
        },
        results: findings.map((f) => ({
          ruleId: f.ruleId,
          ruleIndex: index.get(f.ruleId)!,
          level: f.level,
          message: { text: f.message },
          locations: [
            {
              physicalLocation: {
                artifactLocation: { uri: toUri(f.file) },
                region: { startLine: Math.max(1, f.line), startColumn: Math.max(1, f.column) },
              },
            },
          ],
          ...(f.key || f.properties ? { properties: { ...(f.key ? { key: f.key } : {}), ...f.properties } } : {}),
        })),
      },
    ],
  };
}

/** A relative path as a URI reference: each segment percent-encoded, `/` kept. */
function toUri(file: string): string {
  const abs = file.startsWith('/');
  const uri = file.split('/').map((s) => encodeURIComponent(s)).join('/');
  return abs ? `file://${uri}` : uri;
}
