// Second-opinion FHIR R4 validation with the npm `fhir` package 4.12.0 (new Fhir().validate()).
// Reads a JSON array of resources on stdin; writes one JSON result per resource:
// {"resourceType", "id", "valid", "errors": [message...], "warnings": [message...]}.
// Install: cp package.json package-lock.json <dir> && npm ci --ignore-scripts --no-audit --no-fund --prefix <dir>
// Run:     NODE_PATH=<dir>/node_modules node validate.js < resources.json
'use strict';
const { Fhir } = require('fhir');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const fhir = new Fhir();
  const results = JSON.parse(input).map((resource) => {
    const outcome = fhir.validate(resource, { errorOnUnexpected: true });
    const messages = outcome.messages || [];
    const text = (m) => `${m.location || ''}: ${m.message}`;
    return {
      resourceType: resource.resourceType,
      id: resource.id,
      valid: outcome.valid,
      errors: messages.filter((m) => m.severity === 'error').map(text),
      warnings: messages.filter((m) => m.severity !== 'error').map(text),
    };
  });
  process.stdout.write(JSON.stringify(results));
});
