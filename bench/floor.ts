/**
 * The floor of one pass-through sign-in's cloud CPU on this machine: the primitives the cloud's path
 * cannot do without, each timed alone, summed as `floor_cloud_cpu_ms`. bench/run.ts divides the
 * cloud's measured CPU per sign-in by it (`cloud_to_floor_ratio`), a figure that compares across
 * machines of different speed, where milliseconds do not.
 *
 * Per sign-in the cloud at least: reads one TLS record holding the grant request, parses it and
 * writes the answer in one coalesced write; seals the password to the agent (HPKE, the project's
 * own packages/protocol code); sends the request over the agent's WebSocket and reads the answer;
 * makes ~5 keyed reads and one write transaction (SQLite, prepared statements); takes the keyed
 * hashes smart lockout and the OIDC rows need; seals the two OIDC rows at rest; signs one ID token
 * (ES256). Socket peers run in their own process (bench/floor-peer.ts): only this side is charged.
 * Each part is the least CPU per operation over several rounds (the machine is shared: the least
 * is the one neighbours disturbed least).
 *
 *   node bench/floor.ts [--rounds 5] [--scale 1]     (table on stderr, JSON on the last line)
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  createCipheriv,
  createHmac,
  createPrivateKey,
  createSecretKey,
  generateKeyPairSync,
  randomBytes,
  sign,
} from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { createServer, type TLSSocket } from 'node:tls';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';
import { WebSocketServer } from 'ws';
import { generateHpkeKeyPair, hpkeSeal } from '../packages/protocol/src/hpke.ts';
import { aad } from '../packages/protocol/src/messages.ts';
import { createCa, createServerCert } from '../packages/protocol/src/pki.ts';

/** Keyed hashes per sign-in: a familiar-location key, and the OIDC rows' ids (grant, access token, lookups). */
export const HMACS_PER_SIGNIN = 4;
/** OIDC rows sealed at rest per sign-in: the grant and the access token. */
export const SEALS_PER_SIGNIN = 2;
export const KEYED_READS = 5;

export interface FloorReport {
  floor_cloud_cpu_ms: number;
  /** µs of CPU per sign-in for each part (already multiplied by how often a sign-in does it). */
  floor_parts_us: Record<string, number>;
  /** ES256 through jose on WebCrypto (oidc-provider's way), against node:crypto.sign in the floor. */
  es256_jose_us: number;
  cpu_model: string;
}

export const cpuModel = (): string => {
  try {
    return execFileSync('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]).toString().trim();
  } catch {
    return 'unknown';
  }
};

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** Least CPU µs per call of `fn` over `rounds` rounds of `n` calls, after one warm-up round. */
const leastSync = (rounds: number, n: number, fn: (i: number) => unknown): number => {
  let best = Number.POSITIVE_INFINITY;
  for (let r = -1; r < rounds; r++) {
    const c0 = cpuUs();
    for (let i = 0; i < n; i++) fn(i);
    if (r >= 0) best = Math.min(best, (cpuUs() - c0) / n);
  }
  return best;
};

const leastAsync = async (
  rounds: number,
  n: number,
  batch: (n: number) => Promise<void>,
): Promise<number> => {
  let best = Number.POSITIVE_INFINITY;
  for (let r = -1; r < rounds; r++) {
    const c0 = cpuUs();
    await batch(n);
    if (r >= 0) best = Math.min(best, (cpuUs() - c0) / n);
  }
  return best;
};

/** Counts events and lets a caller wait for the next `n` of them. */
const counter = () => {
  let count = 0;
  let target = Number.POSITIVE_INFINITY;
  let wake: () => void = () => {};
  return {
    tick() {
      if (++count >= target) {
        target = Number.POSITIVE_INFINITY;
        wake();
      }
    },
    next: (n: number) =>
      new Promise<void>((resolve) => {
        target = count + n;
        wake = resolve;
      }),
  };
};

const peer = (spec: Record<string, unknown>): ChildProcess =>
  spawn(process.execPath, [join(import.meta.dirname, 'floor-peer.ts'), JSON.stringify(spec)], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });

// Sizes of the real messages: a password grant, its answer (opaque access token and an ID token).
const ID_TOKEN_CLAIMS = {
  iss: 'https://login.example.com/0f8fad5b-d9cb-469f-a165-70867728950e/v2.0',
  sub: 'b7a1d2c3-4e5f-4a6b-8c7d-9e0f1a2b3c4d',
  aud: 'c0a8f7e6-d5c4-4b3a-9281-706f5e4d3c2b',
  exp: 1_800_000_000,
  iat: 1_799_996_400,
  auth_time: 1_799_996_400,
  at_hash: 'Yq3hN0bq6E3Zb8n6sC2f9w',
  sid: 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6',
  email: 'someone.with.a.long.name@example.com',
  email_verified: true,
  name: 'Someone With A Long Name',
  preferred_username: 'someone.with.a.long.name@example.com',
  tid: '0f8fad5b-d9cb-469f-a165-70867728950e',
  oid: 'b7a1d2c3-4e5f-4a6b-8c7d-9e0f1a2b3c4d',
};
const FORM = new URLSearchParams({
  grant_type: 'password',
  client_id: 'c0a8f7e6-d5c4-4b3a-9281-706f5e4d3c2b',
  username: 'someone.with.a.long.name@example.com',
  password: 'Bench-Passw0rd!1',
  scope: 'openid',
}).toString();
const REQUEST =
  'POST /0f8fad5b-d9cb-469f-a165-70867728950e/oauth2/v2.0/token HTTP/1.1\r\nhost: localhost:8443\r\n' +
  'content-type: application/x-www-form-urlencoded\r\nconnection: keep-alive\r\n' +
  `content-length: ${Buffer.byteLength(FORM)}\r\n\r\n${FORM}`;

const answerFor = (idToken: string): string => {
  const body = JSON.stringify({
    access_token: randomBytes(32).toString('base64url'),
    expires_in: 3600,
    id_token: idToken,
    scope: 'openid',
    token_type: 'Bearer',
  });
  return (
    'HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncache-control: no-store\r\n' +
    `pragma: no-cache\r\ndate: ${new Date().toUTCString()}\r\nconnection: keep-alive\r\n` +
    `keep-alive: timeout=72\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
};

/** One request read and parsed from a TLS record, one coalesced write of the answer. */
const measureTls = async (
  tls: { key: string; cert: string; ca: string },
  idToken: string,
  rounds: number,
  n: number,
): Promise<number> => {
  const done = counter();
  const server = createServer({ key: tls.key, cert: tls.cert }, (s: TLSSocket) => {
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      buf += chunk;
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const headers = new Map<string, string>();
      for (const line of buf.slice(0, end).split('\r\n').slice(1)) {
        const c = line.indexOf(':');
        headers.set(line.slice(0, c).toLowerCase(), line.slice(c + 1).trim());
      }
      const len = Number(headers.get('content-length') ?? 0);
      if (buf.length < end + 4 + len) return;
      const form = new URLSearchParams(buf.slice(end + 4, end + 4 + len));
      buf = buf.slice(end + 4 + len);
      if (!form.get('username')) throw new Error('unexpected request');
      s.write(answerFor(idToken));
      done.tick();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  const p = peer({ mode: 'tls', port, ca: tls.ca, request: REQUEST });
  try {
    await done.next(200);
    return await leastAsync(rounds, n, done.next);
  } finally {
    p.kill();
    server.close();
  }
};

/** The cloud's side of one validation over the agent's WebSocket: send the request, read the result. */
const measureWs = async (
  tls: { key: string; cert: string; ca: string },
  rounds: number,
  n: number,
): Promise<number> => {
  const httpsServer = (await import('node:https')).createServer({ key: tls.key, cert: tls.cert });
  const wss = new WebSocketServer({ server: httpsServer, perMessageDeflate: false });
  await new Promise<void>((r) => httpsServer.listen(0, '127.0.0.1', r));
  const { port } = httpsServer.address() as { port: number };
  const validate = {
    type: 'validate',
    id: randomBytes(16).toString('hex'),
    user: { dn: 'uid=u1,ou=people,dc=bench,dc=test', upn: ID_TOKEN_CLAIMS.email },
    enc: randomBytes(32).toString('base64url'),
    ct: randomBytes(32).toString('base64url'),
    sentAt: Date.now(),
    deadline: Date.now() + 10_000,
  };
  const result = JSON.stringify({
    type: 'result',
    id: validate.id,
    outcome: 'success',
    directoryMs: 0.31,
    directoryCode: '0',
    server: 'ldap://127.0.0.1:389',
    agentMs: 0.52,
  });
  const done = counter();
  const connected = new Promise<import('ws').WebSocket>((resolve) => wss.once('connection', resolve));
  const p = peer({ mode: 'ws', port, ca: tls.ca, result });
  try {
    const ws = await connected;
    const send = () => ws.send(JSON.stringify({ ...validate, sentAt: Date.now() }));
    ws.on('message', (data) => {
      if ((JSON.parse(data.toString()) as { id?: string }).id !== validate.id) throw new Error('bad result');
      done.tick();
      send();
    });
    send();
    await done.next(200);
    return await leastAsync(rounds, n, done.next);
  } finally {
    p.kill();
    wss.close();
    httpsServer.close();
  }
};

/** ~5 keyed reads (client, tenant settings, user, lockout counter, familiar location) and one write transaction. */
const measureSqlite = (dir: string, rounds: number, n: number): { reads: number; write: number } => {
  const db = new DatabaseSync(join(dir, 'floor.db'));
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
  db.exec(`CREATE TABLE kv (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, payload TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE oidc (id TEXT PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL, expires_at INTEGER) WITHOUT ROWID;
    CREATE TABLE signins (id INTEGER PRIMARY KEY, tenant_id TEXT, user_id TEXT, outcome TEXT, at INTEGER, total_ms REAL);`);
  const rows = 10_000;
  const insert = db.prepare('INSERT INTO kv (id, tenant_id, payload) VALUES (?, ?, ?)');
  db.exec('BEGIN');
  for (let i = 0; i < rows; i++) insert.run(`k${i}`, 't1', JSON.stringify({ i, pad: 'x'.repeat(200) }));
  db.exec('COMMIT');
  const read = db.prepare('SELECT payload FROM kv WHERE tenant_id = ? AND id = ?');
  const upsert = db.prepare(
    'INSERT INTO oidc (id, kind, payload, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET payload = excluded.payload',
  );
  const log = db.prepare(
    'INSERT INTO signins (tenant_id, user_id, outcome, at, total_ms) VALUES (?, ?, ?, ?, ?)',
  );
  const payload = `v1.${randomBytes(12).toString('base64url')}.${randomBytes(600).toString('base64url')}`;
  const reads = leastSync(rounds, n, (i) => {
    for (let k = 0; k < KEYED_READS; k++) read.get('t1', `k${(i * 7 + k * 1009) % rows}`);
  });
  let seq = 0;
  const write = leastSync(rounds, n, () => {
    db.exec('BEGIN IMMEDIATE');
    const id = `r${seq++}`;
    upsert.run(`g-${id}`, 'Grant', payload, 1_800_000_000);
    upsert.run(`a-${id}`, 'AccessToken', payload, 1_800_000_000);
    log.run('t1', 'u1', 'success', Date.now(), 12.5);
    db.exec('COMMIT');
  });
  db.close();
  return { reads, write };
};

const measureEs256 = async (rounds: number, n: number): Promise<{ node: number; jose: number }> => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  const header = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: 'k-2026-12' })).toString(
    'base64url',
  );
  const node = leastSync(rounds, n, () => {
    const input = `${header}.${Buffer.from(JSON.stringify(ID_TOKEN_CLAIMS)).toString('base64url')}`;
    const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  });
  const cryptoKey = await crypto.subtle.importKey(
    'pkcs8',
    pkcs8,
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  );
  const jose = await leastAsync(rounds, n, async (k) => {
    for (let i = 0; i < k; i++) {
      await new SignJWT(ID_TOKEN_CLAIMS)
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: 'k-2026-12' })
        .sign(cryptoKey);
    }
  });
  return { node, jose };
};

export const measureFloor = async (opts: { rounds?: number; scale?: number } = {}): Promise<FloorReport> => {
  const rounds = opts.rounds ?? 5;
  const n = (base: number) => Math.max(20, Math.round(base * (opts.scale ?? 1)));
  const dir = mkdtempSync(join(tmpdir(), 'gh-floor-'));
  try {
    const ca = await createCa('floor CA', 1);
    const leaf = await createServerCert(ca, ['localhost', '127.0.0.1'], 1);
    const tls = { key: leaf.keyPem, cert: leaf.certPem, ca: ca.certPem };
    const kp = generateHpkeKeyPair();
    const pw = new TextEncoder().encode('Bench-Passw0rd!1');
    const hpke = leastSync(rounds, n(2000), (i) =>
      hpkeSeal(kp.publicKey, pw, aad('0f8fad5b-d9cb-469f-a165-70867728950e', `r${i}`, 'u@x.test', 1)),
    );
    const macKey = createSecretKey(randomBytes(32));
    const hmac = leastSync(rounds, n(5000), (i) =>
      createHmac('sha256', macKey)
        .update(`0f8fad5b/b7a1d2c3/net/10.0.${i & 255}.0/24`)
        .digest('base64url'),
    );
    const aesKey = createSecretKey(randomBytes(32));
    const row = JSON.stringify({ kind: 'AccessToken', pad: 'x'.repeat(400) });
    const seal = leastSync(rounds, n(5000), () => {
      const c = createCipheriv('aes-256-gcm', aesKey, randomBytes(12));
      c.setAAD(Buffer.from('oidc:AccessToken'));
      return Buffer.concat([c.update(row, 'utf8'), c.final(), c.getAuthTag()]).toString('base64url');
    });
    const es256 = await measureEs256(rounds, n(1000));
    const sqlite = measureSqlite(dir, rounds, n(2000));
    const idToken = `${'e'.repeat(40)}.${Buffer.from(JSON.stringify(ID_TOKEN_CLAIMS)).toString('base64url')}.${'s'.repeat(86)}`;
    const tlsUs = await measureTls(tls, idToken, rounds, n(1000));
    const wsUs = await measureWs(tls, rounds, n(1000));
    const parts: Record<string, number> = {
      tls_request_and_answer: tlsUs,
      hpke_seal: hpke,
      agent_websocket_round_trip: wsUs,
      sqlite_keyed_reads: sqlite.reads,
      sqlite_write_transaction: sqlite.write,
      hmacs: hmac * HMACS_PER_SIGNIN,
      at_rest_seals: seal * SEALS_PER_SIGNIN,
      es256_id_token: es256.node,
    };
    for (const k of Object.keys(parts)) parts[k] = Math.round(parts[k]! * 10) / 10;
    const total = Object.values(parts).reduce((x, y) => x + y, 0);
    return {
      floor_cloud_cpu_ms: Math.round(total) / 1000,
      floor_parts_us: parts,
      es256_jose_us: Math.round(es256.jose * 10) / 10,
      cpu_model: cpuModel(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: { rounds: { type: 'string', default: '5' }, scale: { type: 'string', default: '1' } },
  });
  const r = await measureFloor({ rounds: Number(values.rounds), scale: Number(values.scale) });
  for (const [k, v] of Object.entries(r.floor_parts_us)) process.stderr.write(`${k.padEnd(28)} ${v} µs\n`);
  process.stderr.write(`${'floor_cloud_cpu_ms'.padEnd(28)} ${r.floor_cloud_cpu_ms} ms  (${r.cpu_model})\n`);
  process.stderr.write(`${'(ES256 through jose)'.padEnd(28)} ${r.es256_jose_us} µs\n`);
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(0);
}
