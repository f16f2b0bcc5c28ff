// A real OpenID provider (oidc-provider) on 127.0.0.1 for the identity tests.
//
// It generates one RS256, one ES256 and one EdDSA signing key, serves discovery, JWKS and
// RFC 7662 introspection, and prints one JSON line on stdout once it listens:
//   {"issuer", "client_id", "client_secret", "audience", "keys": [{"kid", "alg", "pem"}]}
// The private keys are printed so tests can forge tokens the provider would never issue
// (expired, wrong audience, ...) that still carry a valid signature.
//
// Test-only routes, beside the provider's own:
//   POST /test/token {"account", "format": "jwt"|"opaque"|"refresh", "alg", "expires_in"} -> {"token"}
//        mints an access token (or a refresh token) through the provider's own models, as its
//        token endpoint would.
//   GET  /test/counters -> {"jwks": <requests to the JWKS endpoint>}
import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const CLIENT_ID = 'rexec-api';
const CLIENT_SECRET = crypto.randomBytes(16).toString('hex');
const AUDIENCE = 'rexec';

const ACCOUNTS = {
  alice: { preferred_username: 'alice', groups: ['/ndp_ep/ep-1'], realm_access: { roles: ['user'] } },
  bob: { preferred_username: 'bob', groups: [{ path: '/other', name: 'other' }], realm_access: { roles: ['user'] } },
};

function signingKey(alg, type, options) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const kid = `${alg.toLowerCase()}-${crypto.randomBytes(4).toString('hex')}`;
  return {
    jwk: { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
    printed: { kid, alg, pem: privateKey.export({ type: 'pkcs8', format: 'pem' }) },
  };
}

const keys = [
  signingKey('RS256', 'rsa', { modulusLength: 2048 }),
  signingKey('ES256', 'ec', { namedCurve: 'P-256' }),
  signingKey('EdDSA', 'ed25519', {}),
];

const counters = { jwks: 0 };
let provider;

const server = http.createServer((req, res) => {
  if (req.url === '/jwks') counters.jwks += 1;
  if (req.url.startsWith('/test/')) {
    testRoute(req, res).catch((err) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: String(err) }));
    });
    return;
  }
  provider.callback()(req, res);
});

async function readJson(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body ? JSON.parse(body) : {};
}

async function testRoute(req, res) {
  let answer;
  if (req.method === 'GET' && req.url === '/test/counters') {
    answer = counters;
  } else if (req.method === 'POST' && req.url === '/test/token') {
    const { account, format = 'jwt', alg = 'RS256', expires_in: expiresIn = 300 } = await readJson(req);
    const client = await provider.Client.find(CLIENT_ID);
    const resourceServer = format === 'jwt'
      ? new provider.ResourceServer(AUDIENCE, { audience: AUDIENCE, accessTokenFormat: 'jwt', jwt: { sign: { alg } } })
      : undefined;
    const token = format === 'refresh'
      ? new provider.RefreshToken({ accountId: account, client, scope: 'openid offline_access', expiresIn })
      : new provider.AccessToken({ accountId: account, client, scope: 'openid', resourceServer, expiresIn });
    answer = { token: await token.save() };
  } else {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(answer));
}

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: keys.map((k) => k.jwk) },
    enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256', 'EdDSA'] },
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      clientCredentials: { enabled: true },
    },
    findAccount: async (_ctx, id) => (ACCOUNTS[id] ? { accountId: id, claims: async () => ({ sub: id }) } : undefined),
    extraTokenClaims: async (_ctx, token) => ACCOUNTS[token.accountId],
    cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
  });
  process.stdout.write(`${JSON.stringify({
    issuer, client_id: CLIENT_ID, client_secret: CLIENT_SECRET, audience: AUDIENCE, keys: keys.map((k) => k.printed),
  })}\n`);
});

// Stop with the test process: the pipe closing on stdin ends the provider.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
