import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * Two checks of a SARIF log.
 *
 * `sarifStructureProblems`: an explicit check, written here from the SARIF 2.1.0 standard
 * (OASIS, §3), of every object Mandate emits: required properties, the closed property sets
 * of the schema (every object there has additionalProperties: false except property bags),
 * enums, integer ranges and URI forms. It always runs, but it is not the whole schema.
 *
 * `officialSchemaValidator`: the official JSON schema run by Ajv (see `officialSchemaPath`
 * for where it comes from; the dev dependency @microsoft/jest-sarif ships it, so it always
 * runs). Ajv and ajv-formats are dev dependencies. The schema says draft-04; the keywords it uses
 * (type, $ref to #/definitions, properties, additionalProperties, required, items, minItems,
 * uniqueItems, minimum, pattern, enum, anyOf, format) mean the same in draft-07, which Ajv 8
 * runs, so only the draft-04 `id` is renamed `$id` and `$schema` dropped.
 */

type Obj = Record<string, unknown>;

const ALLOWED: Record<string, string[]> = {
  sarifLog: ['$schema', 'version', 'runs', 'inlineExternalProperties', 'properties'],
  run: ['tool', 'invocations', 'conversion', 'language', 'versionControlProvenance', 'originalUriBaseIds', 'artifacts', 'logicalLocations', 'graphs', 'results', 'automationDetails', 'runAggregates', 'baselineGuid', 'redactionTokens', 'defaultEncoding', 'defaultSourceLanguage', 'newlineSequences', 'columnKind', 'externalPropertyFileReferences', 'threadFlowLocations', 'taxonomies', 'addresses', 'translations', 'policies', 'webRequests', 'webResponses', 'specialLocations', 'properties'],
  tool: ['driver', 'extensions', 'properties'],
  toolComponent: ['guid', 'name', 'organization', 'product', 'productSuite', 'shortDescription', 'fullDescription', 'fullName', 'version', 'semanticVersion', 'dottedQuadFileVersion', 'releaseDateUtc', 'downloadUri', 'informationUri', 'globalMessageStrings', 'notifications', 'rules', 'taxa', 'locations', 'language', 'contents', 'isComprehensive', 'localizedDataSemanticVersion', 'minimumRequiredLocalizedDataSemanticVersion', 'associatedComponent', 'translationMetadata', 'supportedTaxonomies', 'properties'],
  reportingDescriptor: ['id', 'deprecatedIds', 'guid', 'deprecatedGuids', 'name', 'deprecatedNames', 'shortDescription', 'fullDescription', 'messageStrings', 'defaultConfiguration', 'helpUri', 'help', 'relationships', 'properties'],
  multiformatMessageString: ['text', 'markdown', 'properties'],
  reportingConfiguration: ['enabled', 'level', 'rank', 'parameters', 'properties'],
  result: ['ruleId', 'ruleIndex', 'rule', 'kind', 'level', 'message', 'analysisTarget', 'locations', 'guid', 'correlationGuid', 'occurrenceCount', 'partialFingerprints', 'fingerprints', 'stacks', 'codeFlows', 'graphs', 'graphTraversals', 'relatedLocations', 'suppressions', 'baselineState', 'rank', 'attachments', 'hostedViewerUri', 'workItemUris', 'provenance', 'fixes', 'taxa', 'webRequest', 'webResponse', 'properties'],
  message: ['text', 'markdown', 'id', 'arguments', 'properties'],
  location: ['id', 'physicalLocation', 'logicalLocations', 'message', 'annotations', 'relationships', 'properties'],
  physicalLocation: ['address', 'artifactLocation', 'region', 'contextRegion', 'properties'],
  artifactLocation: ['uri', 'uriBaseId', 'index', 'description', 'properties'],
  region: ['startLine', 'startColumn', 'endLine', 'endColumn', 'charOffset', 'charLength', 'byteOffset', 'byteLength', 'snippet', 'message', 'sourceLanguage', 'properties'],
};
const LEVELS = ['none', 'note', 'warning', 'error'];

export function sarifStructureProblems(log: unknown): string[] {
  const problems: string[] = [];
  const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
  const obj = (v: unknown, kind: string, at: string, required: string[] = []): v is Obj => {
    if (!isObj(v)) {
      problems.push(`${at}: expected a ${kind} object`);
      return false;
    }
    for (const k of Object.keys(v)) if (!ALLOWED[kind]!.includes(k)) problems.push(`${at}: property "${k}" is not allowed in a ${kind}`);
    for (const k of required) if (!(k in v)) problems.push(`${at}: ${kind} requires "${k}"`);
    if ('properties' in v && !isObj(v.properties)) problems.push(`${at}.properties: a property bag is an object`);
    return true;
  };
  const str = (v: unknown, at: string) => typeof v === 'string' || problems.push(`${at}: expected a string`);
  const absUri = (v: unknown, at: string) => (typeof v === 'string' && /^[a-z][a-z0-9+.-]*:\S+$/i.test(v)) || problems.push(`${at}: expected an absolute URI`);
  const int = (v: unknown, min: number, at: string) => (Number.isInteger(v) && (v as number) >= min) || problems.push(`${at}: expected an integer >= ${min}`);
  const mms = (v: unknown, at: string) => obj(v, 'multiformatMessageString', at, ['text']) && str(v.text, `${at}.text`);

  if (!obj(log, 'sarifLog', '$', ['version', 'runs'])) return problems;
  if (log.version !== '2.1.0') problems.push('$.version: must be "2.1.0"');
  if (log.$schema !== undefined) absUri(log.$schema, '$.$schema');
  if (!Array.isArray(log.runs)) return [...problems, '$.runs: expected an array'];
  log.runs.forEach((run, r) => {
    const at = `$.runs[${r}]`;
    if (!obj(run, 'run', at, ['tool'])) return;
    if (!obj(run.tool, 'tool', `${at}.tool`, ['driver'])) return;
    const driver = run.tool.driver;
    if (!obj(driver, 'toolComponent', `${at}.tool.driver`, ['name'])) return;
    str(driver.name, `${at}.tool.driver.name`);
    if (driver.version !== undefined) str(driver.version, `${at}.tool.driver.version`);
    if (driver.informationUri !== undefined) absUri(driver.informationUri, `${at}.tool.driver.informationUri`);
    const rules = Array.isArray(driver.rules) ? driver.rules : [];
    if (driver.rules !== undefined && !Array.isArray(driver.rules)) problems.push(`${at}.tool.driver.rules: expected an array`);
    const ids = new Set<string>();
    rules.forEach((rule, i) => {
      const ra = `${at}.tool.driver.rules[${i}]`;
      if (!obj(rule, 'reportingDescriptor', ra, ['id'])) return;
      str(rule.id, `${ra}.id`);
      if (ids.has(rule.id as string)) problems.push(`${ra}.id: duplicate rule id`);
      ids.add(rule.id as string);
      for (const k of ['shortDescription', 'fullDescription', 'help']) if (rule[k] !== undefined) mms(rule[k], `${ra}.${k}`);
      if (rule.helpUri !== undefined) absUri(rule.helpUri, `${ra}.helpUri`);
      if (rule.defaultConfiguration !== undefined && obj(rule.defaultConfiguration, 'reportingConfiguration', `${ra}.defaultConfiguration`)) {
        const level = rule.defaultConfiguration.level;
        if (level !== undefined && !LEVELS.includes(level as string)) problems.push(`${ra}.defaultConfiguration.level: one of ${LEVELS.join(', ')}`);
      }
    });
    if (run.results === undefined) return;
    if (!Array.isArray(run.results)) return void problems.push(`${at}.results: expected an array`);
    run.results.forEach((res, i) => {
      const ra = `${at}.results[${i}]`;
      if (!obj(res, 'result', ra, ['message'])) return;
      if (obj(res.message, 'message', `${ra}.message`)) {
        // §3.11.2: a message has text or id (the schema's anyOf).
        if (res.message.text === undefined && res.message.id === undefined) problems.push(`${ra}.message: needs text or id`);
        if (res.message.text !== undefined) str(res.message.text, `${ra}.message.text`);
      }
      if (res.ruleId !== undefined) str(res.ruleId, `${ra}.ruleId`);
      if (res.ruleIndex !== undefined) {
        int(res.ruleIndex, -1, `${ra}.ruleIndex`);
        const rule = rules[res.ruleIndex as number] as Obj | undefined;
        // §3.27.6: ruleIndex points into tool.driver.rules at the rule whose id is ruleId.
        if (!rule || rule.id !== res.ruleId) problems.push(`${ra}.ruleIndex: does not point at rule "${String(res.ruleId)}"`);
      }
      if (res.level !== undefined && !LEVELS.includes(res.level as string)) problems.push(`${ra}.level: one of ${LEVELS.join(', ')}`);
      if (res.properties !== undefined && !isObj(res.properties)) problems.push(`${ra}.properties: expected an object`);
      if (res.locations === undefined) return;
      if (!Array.isArray(res.locations)) return void problems.push(`${ra}.locations: expected an array`);
      res.locations.forEach((loc, j) => {
        const la = `${ra}.locations[${j}]`;
        if (!obj(loc, 'location', la) || loc.physicalLocation === undefined) return;
        const pl = loc.physicalLocation;
        if (!obj(pl, 'physicalLocation', `${la}.physicalLocation`)) return;
        // The schema's anyOf: a physical location has an address or an artifactLocation.
        if (pl.artifactLocation === undefined && pl.address === undefined) problems.push(`${la}.physicalLocation: needs artifactLocation or address`);
        if (pl.artifactLocation !== undefined && obj(pl.artifactLocation, 'artifactLocation', `${la}.physicalLocation.artifactLocation`)) {
          const uri = pl.artifactLocation.uri;
          // A URI reference (RFC 3986): no spaces, no backslashes, percent-encoding well formed.
          if (typeof uri !== 'string' || /[\s\\]/.test(uri) || /%(?![0-9A-Fa-f]{2})/.test(uri)) problems.push(`${la}.physicalLocation.artifactLocation.uri: expected a URI reference`);
        }
        if (pl.region !== undefined && obj(pl.region, 'region', `${la}.physicalLocation.region`)) {
          for (const k of ['startLine', 'startColumn', 'endLine', 'endColumn']) if (pl.region[k] !== undefined) int(pl.region[k], 1, `${la}.physicalLocation.region.${k}`);
        }
      });
    });
  });
  return problems;
}

/**
 * Where the official schema is looked for: $SARIF_SCHEMA, or the OASIS errata file when this
 * machine has one (test/fixtures/, ../shared/), else the SARIF 2.1.0 schema that Microsoft (the
 * format's editors) publish in the `@microsoft/jest-sarif` dev dependency
 * (`sarif-2.1.0-rtm.5.json`, the schema of the 2.1.0 standard as released; MIT). So a schema
 * is always there on a fresh clone after `npm ci`; undefined only if the package is gone.
 */
export function officialSchemaPath(): string | undefined {
  const shipped = resolve('node_modules/@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json');
  const candidates = [process.env.SARIF_SCHEMA, resolve('test/fixtures/sarif-schema-2.1.0.json'), resolve('../shared/sarif-schema-2.1.0.json'), shipped];
  return candidates.find((p): p is string => !!p && existsSync(p));
}

/** A validator from the official schema (see above), returning Ajv's error texts. */
export async function officialSchemaValidator(path: string): Promise<(log: unknown) => string[]> {
  const schema = JSON.parse(readFileSync(path, 'utf8')) as Obj;
  const { id, $schema: _draft, ...rest } = schema;
  // Ajv is CommonJS; its class is the default export's default.
  type AjvLike = { compile(s: unknown): ((d: unknown) => boolean) & { errors?: { instancePath: string; message?: string }[] | null } };
  const ajvMod = (await import('ajv')) as unknown as { default: { default?: new (o: object) => AjvLike } & (new (o: object) => AjvLike) };
  const formatsMod = (await import('ajv-formats')) as unknown as { default: { default?: (a: AjvLike) => void } & ((a: AjvLike) => void) };
  const Ajv = ajvMod.default.default ?? ajvMod.default;
  const addFormats = formatsMod.default.default ?? formatsMod.default;
  // unicodeRegExp: false: the 2.1.0 schemas' language pattern is not a valid /u regular expression.
  const ajv = new Ajv({ allErrors: true, strict: false, unicodeRegExp: false });
  addFormats(ajv);
  const validate = ajv.compile({ ...rest, $id: id });
  return (log) => (validate(log) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '$'} ${e.message ?? ''}`));
}
