// Validates KEDA and Prometheus-operator objects (a JSON array on stdin) with the validators that
// @kubernetes-models/keda and @kubernetes-models/prometheus-operator compile from the projects' CRD schemas
// (types, enums, required fields, patterns). Prints a JSON array: one {kind, name, errors} per object.
// Usage: node validate-crds.mjs <node_modules dir> < objects.json
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const MODELS = {
  "keda.sh/v1alpha1": ["@kubernetes-models/keda", "keda.sh/v1alpha1"],
  "monitoring.coreos.com/v1": ["@kubernetes-models/prometheus-operator", "monitoring.coreos.com/v1"],
};

const root = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const object of objects) {
  const model = MODELS[object.apiVersion];
  const name = object.metadata?.name;
  if (!model) {
    results.push({ kind: object.kind, name, errors: [`no model for apiVersion ${object.apiVersion}`] });
    continue;
  }
  const file = join(root, model[0], model[1], `${object.kind}.js`);
  const module = await import(pathToFileURL(file).href);
  const instance = new module[object.kind](object);
  const errors = [];
  try {
    instance.validate();
  } catch (error) {
    errors.push(error.message);
  }
  results.push({ kind: object.kind, name, errors });
}
process.stdout.write(JSON.stringify(results));
