// Checks deploy/k8s the way a cluster's API server would before accepting it,
// without a cluster: follows each kustomization's resources (directories and
// files), parses every YAML document and validates it against the Kubernetes
// OpenAPI schema that kubernetes-models ships for its kind, then applies the
// house rules the manifests promise (probes on /healthz, resource requests,
// no privilege escalation, secrets referenced exist in an overlay).
//
// usage: node validate_k8s.mjs NODE_MODULES_DIR KUSTOMIZATION_DIR...
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const [modulesDir, ...roots] = process.argv.slice(2);
if (!modulesDir || roots.length === 0) {
  console.error('usage: node validate_k8s.mjs NODE_MODULES_DIR KUSTOMIZATION_DIR...');
  process.exit(2);
}
const require = createRequire(path.resolve(modulesDir, 'x.js'));
const YAML = require('yaml');

// apiVersion/kind -> the module of kubernetes-models that defines it.
function modelClass(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const mod = group === '' ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
  let m;
  try {
    m = require(mod);
  } catch (e) {
    return null;
  }
  return m[kind] || null;
}

let errors = 0;
function fail(where, msg) {
  console.error(`deploy/k8s: ${where}: ${msg}`);
  errors++;
}

// Returns [{file, doc}] of every object a kustomization renders, and records
// generated secrets' names in `generated`.
function collect(dir, seen, generated) {
  const kfile = path.join(dir, 'kustomization.yaml');
  if (!fs.existsSync(kfile)) {
    fail(dir, 'no kustomization.yaml');
    return [];
  }
  if (seen.has(kfile)) return [];
  seen.add(kfile);
  const k = YAML.parse(fs.readFileSync(kfile, 'utf8'));
  if (k.kind !== 'Kustomization') fail(kfile, `kind is ${k.kind}, not Kustomization`);
  const out = [];
  for (const r of k.resources || []) {
    const p = path.join(dir, r);
    if (!fs.existsSync(p)) {
      fail(kfile, `resource ${r} does not exist`);
      continue;
    }
    if (fs.statSync(p).isDirectory()) {
      out.push(...collect(p, seen, generated));
      continue;
    }
    const docs = YAML.parseAllDocuments(fs.readFileSync(p, 'utf8'));
    for (const d of docs) {
      if (d.errors.length) fail(p, d.errors.map((e) => e.message).join('; '));
      const obj = d.toJS();
      if (obj) out.push({ file: p, doc: obj, ns: k.namespace });
    }
  }
  for (const g of k.secretGenerator || []) {
    if (!g.name) fail(kfile, 'a secretGenerator without a name');
    else generated.add(g.name);
  }
  return out;
}

function checkPodSpec(where, spec, secrets) {
  if (!spec.securityContext || spec.securityContext.runAsNonRoot !== true)
    fail(where, 'pod must set securityContext.runAsNonRoot: true');
  for (const c of spec.containers || []) {
    const w = `${where} container ${c.name}`;
    const sc = c.securityContext || {};
    if (sc.allowPrivilegeEscalation !== false) fail(w, 'allowPrivilegeEscalation must be false');
    if (!c.resources || !c.resources.requests || !c.resources.requests.cpu || !c.resources.requests.memory)
      fail(w, 'resources.requests.cpu and .memory are required');
    for (const e of c.env || []) {
      const ref = e.valueFrom && e.valueFrom.secretKeyRef;
      if (ref) secrets.push({ where: w, name: ref.name });
    }
    for (const m of c.volumeMounts || []) {
      if (!(spec.volumes || []).some((v) => v.name === m.name) &&
          !(spec._claims || []).includes(m.name))
        fail(w, `volumeMount ${m.name} has no volume`);
    }
  }
}

const nroots = roots.length;
for (const root of roots) {
  const errorsBefore = errors;
  const generated = new Set();
  const objs = collect(root, new Set(), generated);
  if (objs.length === 0) fail(root, 'renders no objects');
  const secretRefs = [];
  const kinds = {};
  for (const { file, doc } of objs) {
    const where = `${path.relative(process.cwd(), file)} ${doc.kind}/${doc.metadata && doc.metadata.name}`;
    kinds[doc.kind] = (kinds[doc.kind] || 0) + 1;
    const C = modelClass(doc.apiVersion || '', doc.kind || '');
    if (!C) {
      fail(where, `unknown apiVersion/kind ${doc.apiVersion}/${doc.kind}`);
      continue;
    }
    try {
      new C(doc).validate();
    } catch (e) {
      fail(where, `schema: ${e.message}`);
    }
    const tpl = doc.spec && doc.spec.template && doc.spec.template.spec;
    if (tpl) {
      tpl._claims = (doc.spec.volumeClaimTemplates || []).map((v) => v.metadata.name);
      checkPodSpec(where, tpl, secretRefs);
      delete tpl._claims;
    }
    if (doc.kind === 'StatefulSet') {
      for (const c of tpl.containers) {
        for (const probe of ['readinessProbe', 'livenessProbe']) {
          const p = c[probe];
          if (!p || !p.httpGet || p.httpGet.path !== '/healthz')
            fail(where, `${c.name}: ${probe} must be an httpGet on /healthz`);
        }
      }
      if (!(doc.spec.volumeClaimTemplates || []).length) fail(where, 'the server needs a volumeClaimTemplate');
    }
  }
  // An overlay that generates secrets must generate every one the pods use.
  if (generated.size > 0) {
    for (const r of secretRefs)
      if (!generated.has(r.name)) fail(r.where, `secret ${r.name} is not generated by ${root}`);
  }
  if (errors === errorsBefore)
    console.log(`deploy/k8s: ${root}: ${objs.length} objects valid (${Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(', ')})`);
}
if (errors) {
  console.error(`deploy/k8s: ${errors} error(s)`);
  process.exit(1);
}
console.log(`deploy/k8s: ${nroots} kustomization(s) checked`);
