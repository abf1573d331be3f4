// A real OIDC provider (npm `oidc-provider`, pinned in package-lock.json) on 127.0.0.1,
// driven by oidc_provider_cases.py over stdin/stdout, one JSON object per line.
//
// It issues JWT access tokens (RS256) by the client-credentials grant to client
// `batch-job`; the audience is `infermesh`, or `other` for `resource=urn:other`.
// Discovery at /.well-known/openid-configuration, keys at its jwks_uri.
//
// Commands (stdin):  stop     → the provider stops listening
//                    rotate   → it restarts on the same port signing with a new key
//                               (`op-key-2`; the old `op-key-1` still published)
// Replies (stdout, after `@@infermesh `):  {"event": "started", "issuer": ..., "kid": ...} | {"event": "stopped"}
//                    | {"event": "error", "message": ...}
// stdin closed (the driver ended or died) → the provider stops and the process exits.
//
// Usage: node oidc_provider.mjs
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import readline from 'node:readline';
import Provider from 'oidc-provider';

const CLIENT = { id: 'batch-job', secret: 'batch-secret-0123456789' };

function signingJwk(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

async function startProvider(wantedPort, keys) {
  // Listen first: the issuer URL must carry the real port.
  let handler = (_req, res) => { res.statusCode = 503; res.end(); };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(wantedPort, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT.id,
      client_secret: CLIENT.secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:infermesh:gateway',
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => ({
          scope: 'predict',
          audience: resource === 'urn:other' ? 'other' : 'infermesh',
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  handler = provider.callback();
  return {
    issuer,
    port,
    kid: keys[0].kid,
    stop: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

// Replies carry a prefix: oidc-provider itself prints notices on stdout.
const say = (obj) => process.stdout.write(`@@infermesh ${JSON.stringify(obj)}\n`);
const k1 = signingJwk('op-key-1');
let op = await startProvider(0, [k1]);
let running = true;
say({ event: 'started', issuer: op.issuer, kid: op.kid });

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  try {
    const cmd = line.trim();
    if (cmd === 'stop') {
      if (running) await op.stop();
      running = false;
      say({ event: 'stopped' });
    } else if (cmd === 'rotate') {
      if (running) await op.stop();
      op = await startProvider(op.port, [signingJwk('op-key-2'), k1]);
      running = true;
      say({ event: 'started', issuer: op.issuer, kid: op.kid });
    } else if (cmd) {
      say({ event: 'error', message: `unknown command ${cmd}` });
    }
  } catch (e) {
    say({ event: 'error', message: String(e.stack || e) });
  }
}
if (running) await op.stop();
process.exit(0);
