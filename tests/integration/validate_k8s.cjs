// Validates Kubernetes manifests offline against the API schemas of the npm
// `kubernetes-models` package (tests/integration/test_deploy.py runs it; scripts/deps.sh
// test installs the packages into tests/integration/.npm).
//   node tests/integration/validate_k8s.cjs FILE.yaml...
// Each YAML document must be an object with apiVersion, kind and metadata.name, of a
// kind the package has a model for, and pass that model's validate(). Prints one line
// per document, `FILE#N KIND NAME: ok` or `...: error: MESSAGE`; exits 1 when any fails.
//   node tests/integration/validate_k8s.cjs --dump FILE.yaml...
// prints the documents of the files as one JSON array of [FILE, INDEX, OBJECT] (the
// test reads YAML with it: Python's standard library has no YAML parser).
// What it does not catch: the schemas do not forbid unknown fields (a misspelt key
// passes here; `kubectl apply --validate=strict` on a cluster rejects it).
"use strict";
const fs = require("fs");
const path = require("path");
const modules = path.join(__dirname, ".npm", "node_modules");
const YAML = require(path.join(modules, "yaml"));
const models = path.join(modules, "kubernetes-models");

function modelFor(apiVersion, kind) {
  // apps/v1 -> kubernetes-models/apps/v1; v1 -> kubernetes-models/v1
  const dir = path.join(models, ...apiVersion.split("/"));
  if (!fs.existsSync(path.join(dir, "index.js"))) return null;
  const mod = require(dir);
  return mod[kind] || null;
}

if (process.argv[2] === "--dump") {
  const out = [];
  for (const file of process.argv.slice(3)) {
    YAML.parseAllDocuments(fs.readFileSync(file, "utf8")).forEach((doc, i) => {
      if (doc.errors.length) throw new Error(`${file}#${i + 1}: ${doc.errors[0].message}`);
      out.push([file, i, doc.toJS()]);
    });
  }
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
}

let failed = 0;
for (const file of process.argv.slice(2)) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  docs.forEach((doc, i) => {
    const where = `${file}#${i + 1}`;
    const fail = (msg) => { failed++; console.log(`${where}: error: ${msg}`); };
    if (doc.errors.length) return fail(doc.errors.map((e) => e.message).join("; "));
    const obj = doc.toJS();
    if (obj === null) return; // an empty document (a trailing ---)
    if (typeof obj !== "object" || !obj.apiVersion || !obj.kind) return fail("no apiVersion or kind");
    if (!obj.metadata || !obj.metadata.name) return fail(`${obj.kind} without metadata.name`);
    const Model = modelFor(obj.apiVersion, obj.kind);
    if (!Model) return fail(`no schema for ${obj.apiVersion} ${obj.kind}`);
    try {
      new Model(obj).validate();
    } catch (e) {
      return fail(`${obj.kind} ${obj.metadata.name}: ${e.message}`);
    }
    console.log(`${where} ${obj.kind} ${obj.metadata.name}: ok`);
  });
}
process.exit(failed ? 1 : 0);
