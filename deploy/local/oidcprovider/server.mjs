// An independent OpenID Provider for the radcds local stack and its integration tests: panva's npm
// oidc-provider 9.x (a certified OpenID Connect implementation), configured for the worklist.
//
//   OIDC_PORT=8090 OIDC_REDIRECT_URIS=http://127.0.0.1:8086/auth/callback node server.mjs
//
// - issuer http://127.0.0.1:<OIDC_PORT> (OIDC_ISSUER overrides), discovery at
//   /.well-known/openid-configuration (OpenID Connect Discovery 1.0);
// - one client, "radcds-worklist": a public client (token_endpoint_auth_method "none"), so PKCE with S256
//   is required (RFC 7636; oidc-provider requires it for public clients and supports only S256);
//   redirect URIs from OIDC_REDIRECT_URIS (comma separated);
// - the four development accounts below, with the claims name, fhirUser and roles, released in the ID token
//   (conformIdTokenClaims false) for the scopes openid profile fhirUser;
// - its development login interaction (devInteractions): the login name is the account id, the password is
//   ignored; a name that is no development account ends the flow with access_denied at the redirect URI;
// - a fresh RSA signing key at every start (RS256; the JWKS is at /jwks): nothing to keep, nothing secret on disk.
//
// Development and tests only: never a production identity provider.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import * as querystring from 'node:querystring';

import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT || '8090');
const host = process.env.OIDC_HOST || '127.0.0.1';
const issuer = process.env.OIDC_ISSUER || `http://${host}:${port}`;
const redirectUris = (process.env.OIDC_REDIRECT_URIS || 'http://127.0.0.1:8086/auth/callback')
  .split(',')
  .map((u) => u.trim())
  .filter(Boolean);

// The development accounts: the same four the worklist's development login lists
// (radcds_worklist.adapters.oidc.DEVELOPMENT_USERS; tests/integration/test_worklist_oidc.py signs in as each).
const ACCOUNTS = {
  'dr-ada': { name: 'Dr Ada Lovelace', fhirUser: 'Practitioner/dr-ada', roles: ['radiologist'] },
  'dr-ben': { name: 'Dr Ben Carson', fhirUser: 'Practitioner/dr-ben', roles: ['radiologist'] },
  vic: { name: 'Vic Viewer', fhirUser: 'Practitioner/vic', roles: ['viewer'] },
  ann: { name: 'Ann Admin', fhirUser: 'Practitioner/ann', roles: ['admin'] },
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `radcds-dev-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'radcds-worklist',
      client_name: 'radcds worklist',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: redirectUris,
    },
  ],
  claims: {
    openid: ['sub'],
    profile: ['name', 'roles'],
    fhirUser: ['fhirUser'],
  },
  scopes: ['openid', 'profile', 'fhirUser'],
  conformIdTokenClaims: false,
  cookies: { keys: [randomBytes(32).toString('hex')] },
  jwks: { keys: [signingKey] },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  // Lifetimes in seconds (the session matches the worklist's default session_max_age_s).
  ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 600, Session: 8 * 3600, Grant: 8 * 3600 },
  async findAccount(ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) {
      return undefined;
    }
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: account.name, fhirUser: account.fhirUser, roles: account.roles };
      },
    };
  },
});

// devInteractions takes any login name as the account id; an unknown one would loop back to the login form.
// This middleware reads the submitted form first (oidc-provider then uses the parsed body) and ends the
// interaction with access_denied when the name is no development account.
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)) {
    const chunks = [];
    for await (const chunk of ctx.req) {
      chunks.push(chunk);
    }
    const body = querystring.parse(Buffer.concat(chunks).toString('utf-8'));
    ctx.req.body = body;
    if (body.prompt === 'login' && !Object.hasOwn(ACCOUNTS, String(body.login))) {
      console.log('sign-in refused: no such development account');
      ctx.respond = false;
      await provider.interactionFinished(ctx.req, ctx.res, {
        error: 'access_denied',
        error_description: 'no such development account',
      }, { mergeWithLastSubmission: false });
      return;
    }
  }
  await next();
});

provider.listen(port, host, () => {
  console.log(`oidcprovider listening on ${issuer}`);
});
