#!/usr/bin/env node
// Validates Backstage catalog files offline, the way the catalog backend would accept them:
//   node tools/validate-catalog.cjs [--each] catalog-info.yaml [more.yaml ...]
// 1. every document parses (js-yaml) and its `$text`/`$json`/`$yaml` placeholders resolve to files
//    (relative to the catalog file, inside its directory tree), which are substituted as the
//    catalog's placeholder processor does;
// 2. Backstage's entity policies (schema, default namespace, no foreign root fields, field formats);
// 3. the kind validator of its kind (Component, API, System, Domain, Group, Resource, ...);
// 4. every entity reference (owner, system, domain, dependsOn, providesApis, ...) resolves to an
//    entity of an allowed kind in the given files, and names no entity twice;
// 5. a `backstage.io/techdocs-ref: dir:<path>` points at a directory holding mkdocs.yml.
// Prints a JSON summary ({entities, errors}) on stdout; exits 1 when there is any error.
// With --each, every file is validated as a catalog of its own (the tests' broken copies).
'use strict';

const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');
const model = require('@backstage/catalog-model');

const POLICY = model.EntityPolicies.allOf([
  new model.SchemaValidEntityPolicy(),
  new model.DefaultNamespaceEntityPolicy(),
  new model.NoForeignRootFieldsEntityPolicy(),
  new model.FieldFormatEntityPolicy(),
]);

const KIND_VALIDATORS = [
  model.apiEntityV1alpha1Validator,
  model.componentEntityV1alpha1Validator,
  model.domainEntityV1alpha1Validator,
  model.groupEntityV1alpha1Validator,
  model.locationEntityV1alpha1Validator,
  model.resourceEntityV1alpha1Validator,
  model.systemEntityV1alpha1Validator,
  model.userEntityV1alpha1Validator,
];

// spec field -> [default kind for a ref without one (null: the kind must be written), allowed kinds]
const REF_FIELDS = {
  owner: ['group', ['group', 'user']],
  system: ['system', ['system']],
  domain: ['domain', ['domain']],
  subdomainOf: ['domain', ['domain']],
  subcomponentOf: ['component', ['component']],
  providesApis: ['api', ['api']],
  consumesApis: ['api', ['api']],
  dependsOn: [null, ['component', 'resource']],
  dependencyOf: [null, ['component', 'resource']],
  parent: ['group', ['group']],
  children: ['group', ['group']],
  members: ['user', ['user']],
  memberOf: ['group', ['group']],
};

function resolvePlaceholders(value, baseDir, where, errors) {
  if (Array.isArray(value)) return value.map((item, i) => resolvePlaceholders(item, baseDir, `${where}[${i}]`, errors));
  if (value === null || typeof value !== 'object') return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0].startsWith('$')) {
    const [kind, target] = [keys[0], value[keys[0]]];
    if (!['$text', '$json', '$yaml'].includes(kind) || typeof target !== 'string') {
      errors.push(`${where}: unsupported placeholder ${kind}`);
      return value;
    }
    const file = path.resolve(baseDir, target);
    if (path.relative(baseDir, file).startsWith('..') || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      errors.push(`${where}: ${kind} ${target} is not a file under ${baseDir}`);
      return '';
    }
    const text = fs.readFileSync(file, 'utf8');
    try {
      return kind === '$text' ? text : kind === '$json' ? JSON.parse(text) : yaml.load(text);
    } catch (e) {
      errors.push(`${where}: ${kind} ${target} does not parse: ${e.message}`);
      return '';
    }
  }
  const out = {};
  for (const key of keys) out[key] = resolvePlaceholders(value[key], baseDir, `${where}.${key}`, errors);
  return out;
}

function loadDocuments(file, errors) {
  const baseDir = path.dirname(path.resolve(file));
  let documents;
  try {
    documents = yaml.loadAll(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    errors.push(`${file}: does not parse: ${e.message}`);
    return [];
  }
  return documents
    .map((doc, i) => ({ where: `${file}#${i + 1}`, doc }))
    .filter(({ where, doc }) => {
      if (doc === null || doc === undefined) return false;
      if (typeof doc !== 'object' || Array.isArray(doc)) errors.push(`${where}: not a mapping`);
      return typeof doc === 'object' && !Array.isArray(doc);
    })
    .map(({ where, doc }) => ({ where, baseDir, entity: resolvePlaceholders(doc, baseDir, where, errors) }));
}

async function validateEntity({ where, entity }, errors) {
  let enforced;
  try {
    enforced = await POLICY.enforce(entity);
  } catch (e) {
    errors.push(`${where}: ${e.message}`);
    return undefined;
  }
  if (!enforced) {
    errors.push(`${where}: refused by the entity policies`);
    return undefined;
  }
  for (const validator of KIND_VALIDATORS) {
    try {
      if (await validator.check(enforced)) return enforced;
    } catch (e) {
      errors.push(`${where} (${enforced.kind} ${enforced.metadata.name}): ${e.message}`);
      return undefined;
    }
  }
  errors.push(`${where}: no validator knows ${enforced.apiVersion} ${enforced.kind}`);
  return undefined;
}

function refOf(entity) {
  return model.stringifyEntityRef(entity).toLowerCase();
}

function checkReferences(items, known, errors) {
  for (const { where, entity } of items) {
    const spec = entity.spec || {};
    const namespace = entity.metadata.namespace || model.DEFAULT_NAMESPACE;
    for (const [field, [defaultKind, allowedKinds]] of Object.entries(REF_FIELDS)) {
      if (spec[field] === undefined) continue;
      for (const raw of [].concat(spec[field])) {
        let parsed;
        try {
          parsed = model.parseEntityRef(raw, defaultKind ? { defaultKind, defaultNamespace: namespace } : { defaultNamespace: namespace });
        } catch (e) {
          errors.push(`${where} (${entity.kind} ${entity.metadata.name}): spec.${field} ${raw}: ${e.message}`);
          continue;
        }
        const ref = model.stringifyEntityRef(parsed).toLowerCase();
        if (!allowedKinds.includes(parsed.kind.toLowerCase())) {
          errors.push(`${where} (${entity.kind} ${entity.metadata.name}): spec.${field} ${raw} must be a ${allowedKinds.join(' or ')}`);
        } else if (!known.has(ref)) {
          errors.push(`${where} (${entity.kind} ${entity.metadata.name}): spec.${field} ${raw} names no entity in the catalog`);
        }
      }
    }
  }
}

function checkTechDocs(items, errors) {
  for (const { where, baseDir, entity } of items) {
    const ref = (entity.metadata.annotations || {})['backstage.io/techdocs-ref'];
    if (ref === undefined) continue;
    if (!ref.startsWith('dir:')) {
      errors.push(`${where}: backstage.io/techdocs-ref ${ref}: only dir: references are checked here`);
      continue;
    }
    const dir = path.resolve(baseDir, ref.slice('dir:'.length));
    if (!['mkdocs.yml', 'mkdocs.yaml'].some(name => fs.existsSync(path.join(dir, name)))) {
      errors.push(`${where}: backstage.io/techdocs-ref ${ref}: no mkdocs.yml in ${dir}`);
    }
  }
}

async function validateCatalog(files) {
  const errors = [];
  const loaded = files.flatMap(file => loadDocuments(file, errors));
  const items = [];
  for (const item of loaded) {
    const entity = await validateEntity(item, errors);
    if (entity) items.push({ ...item, entity });
  }
  const known = new Set();
  for (const { where, entity } of items) {
    const ref = refOf(entity);
    if (known.has(ref)) errors.push(`${where}: ${ref} is defined twice`);
    known.add(ref);
  }
  checkReferences(items, known, errors);
  checkTechDocs(items, errors);
  return { entities: [...known].sort(), errors };
}

// `--each a.yaml b.yaml`: every file is a catalog of its own; the summary maps file -> {entities, errors}.
async function main(args) {
  const each = args[0] === '--each';
  const files = each ? args.slice(1) : args;
  if (files.length === 0) {
    process.stderr.write('usage: validate-catalog.cjs [--each] catalog-info.yaml [more.yaml ...]\n');
    process.exitCode = 2;
    return;
  }
  const results = each ? Object.fromEntries(await Promise.all(files.map(async f => [f, await validateCatalog([f])])))
    : { catalog: await validateCatalog(files) };
  const errors = Object.values(results).flatMap(r => r.errors);
  process.stdout.write(JSON.stringify(each ? results : results.catalog, null, 2) + '\n');
  for (const error of errors) process.stderr.write(`catalog: ${error}\n`);
  process.exitCode = errors.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).catch(e => {
  process.stderr.write(`catalog: ${e.stack || e}\n`);
  process.exitCode = 2;
});
