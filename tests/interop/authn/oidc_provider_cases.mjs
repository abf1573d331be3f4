// Interop: a real OIDC provider (npm `oidc-provider`, client-credentials grant,
// JWT access tokens) on 127.0.0.1 issues tokens; the infermesh Authenticator (the
// `verify` example) verifies them via OIDC discovery. Also: provider stopped →
// cached keys still validate; provider restarted with rotated keys → the new kid
// is accepted after the refetch it triggers.
//
// Usage: node oidc_provider_cases.mjs VERIFY_BIN
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import readline from 'node:readline';
import Provider from 'oidc-provider';

const verifyBin = process.argv[2];
const CLIENT = { id: 'batch-job', secret: 'batch-secret-0123456789' };
const AUD = 'infermesh';

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
  const port = server.address().port;
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
        getResourceServerInfo: () => ({
          scope: 'predict',
          audience: AUD,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  handler = provider.callback();
  return { issuer, port, stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

// A fresh connection per request (no keep-alive pool): the provider is restarted
// on the same port, and a pooled socket to the old one would fail the request.
function postForm(url, headers, form) {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      agent: false,
      timeout: 10000,
      headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { data += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, text: data }));
    });
    req.on('timeout', () => req.destroy(new Error('token request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

async function clientCredentialsToken(issuer) {
  const basic = Buffer.from(`${encodeURIComponent(CLIENT.id)}:${encodeURIComponent(CLIENT.secret)}`).toString('base64');
  const res = await postForm(`${issuer}/token`, { authorization: `Basic ${basic}` }, { grant_type: 'client_credentials', scope: 'predict' });
  const body = JSON.parse(res.text);
  if (res.status !== 200 || typeof body.access_token !== 'string') {
    throw new Error(`token endpoint: ${res.status} ${res.text}`);
  }
  return body.access_token;
}

function kidOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).kid;
}

class Verifier {
  constructor(issuer) {
    this.proc = spawn(verifyBin, ['--issuer', issuer, '--discovery', '--aud', AUD, '--min-refresh', '0'], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }
  async check(token) {
    this.proc.stdin.write(`${token}\n`);
    const next = await Promise.race([
      this.lines.next(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('verify timed out')), 15000)),
    ]);
    if (next.done) throw new Error('verify exited');
    return JSON.parse(next.value);
  }
  close() { this.proc.stdin.end(); }
}

let passed = 0;
let failed = 0;
function expect(name, got, status) {
  const ok = got.status === status && (status !== 200 || got.principal);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${got.status} ${got.principal ?? got.error ?? ''}`);
  if (ok) passed += 1; else { failed += 1; console.log(`     got ${JSON.stringify(got)}`); }
}

const k1 = signingJwk('op-key-1');
let op = await startProvider(0, [k1]);
const verifier = new Verifier(op.issuer);
try {
  const t1 = await clientCredentialsToken(op.issuer);
  expect(`client-credentials token (kid ${kidOf(t1)})`, await verifier.check(t1), 200);
  const [h, p, s] = t1.split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: 'mallory' })).toString('base64url')}.${s}`;
  expect('altered payload', await verifier.check(forged), 401);
  expect('truncated signature', await verifier.check(`${h}.${p}.${s.slice(0, 20)}`), 401);

  // Outage: the provider stops; the cached key keeps validating.
  await op.stop();
  expect('provider stopped: cached key', await verifier.check(t1), 200);

  // Rotation: the provider comes back on the same port signing with a new key
  // (the old one still published).
  const k2 = signingJwk('op-key-2');
  op = await startProvider(op.port, [k2, k1]);
  const t2 = await clientCredentialsToken(op.issuer);
  if (kidOf(t2) !== 'op-key-2') throw new Error(`provider signed with ${kidOf(t2)}`);
  expect('rotated key (new kid op-key-2)', await verifier.check(t2), 200);
  expect('old key still published', await verifier.check(t1), 200);
} catch (e) {
  failed += 1;
  console.log(`FAIL ${e.stack || e}`);
} finally {
  verifier.close();
  await op.stop();
}
console.log(`oidc-provider: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
