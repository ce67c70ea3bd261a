/**
 * A bounded fuzzer of the agent channel (issue 10, item 1). One tenant's agents, with real
 * certificates registered through the real registration route, send thousands of generated frames
 * over mutual TLS: valid, truncated, oversized, out of order, pipelined, binary, interleaved with
 * closes and resets. Meanwhile another tenant's users keep signing in through that tenant's real
 * agent process against a real slapd. The cloud must answer every one of those sign-ins, let
 * nothing reach the process (no unhandled rejection, no uncaught exception), let go of every fuzz
 * connection, and keep its memory bounded.
 *
 * The run is seeded: GATEHOUSE_FUZZ_SEED=<n> replays one. The seed is printed first.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  AGENT_CHANNEL_PATH,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  type RegisterResponse,
} from '@gatehouse/protocol';
import WebSocket from 'ws';
import { createRegistrationToken } from '../apps/cloud/src/store/registration-tokens.ts';
import { createTenant } from '../apps/cloud/src/store/tenants.ts';
import { newAgentKeys } from '../apps/cloud/test/gateway-harness.ts';
import { pinnedFetch } from './harness/pinned-fetch.ts';
import { type SlapdInstance, startSlapd } from './harness/slapd.ts';
import { type Stack, startStack } from './harness/stack.ts';

const DOMAIN = 'fuzz-served.test';
const PW = `Served-${Math.random().toString(36).slice(2, 8)}-Pw1`;
/** Frames in all; the run is also cut at FUZZ_MS so a slow machine stays within the budget. */
const FRAMES = 4_000;
const FUZZ_MS = 15_000;
/** Fuzz connections open at once. */
const PARALLEL = 4;
const SEED = Number(process.env.GATEHOUSE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: small, seedable, good enough to pick frames. */
const prng = (seed: number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

let slapd: SlapdInstance;
let stack: Stack;
const escaped: unknown[] = [];
const onEscape = (err: unknown) => escaped.push(err);

before(async () => {
  process.on('unhandledRejection', onEscape);
  process.on('uncaughtException', onEscape);
  slapd = await startSlapd({ users: [{ uid: 'olive', password: PW }] });
  stack = await startStack({
    domain: DOMAIN,
    directory: {
      kind: 'openldap',
      urls: [slapd.url],
      bindDn: slapd.serviceDn,
      bindPassword: slapd.servicePassword,
      baseDns: [slapd.peopleDn],
      extra: { upnAttribute: 'uid', upnDomain: DOMAIN },
    },
    expectUsers: [`olive@${DOMAIN}`],
    // Thousands of refused frames are logged; debug would only slow the run down.
    cloud: { logLevel: 'info' },
  });
});

after(async () => {
  process.off('unhandledRejection', onEscape);
  process.off('uncaughtException', onEscape);
  await stack?.stop();
  await slapd?.stop();
});

interface Creds {
  certPem: string;
  keyPem: string;
}

const registerFuzzAgents = async (tenantId: string, n: number): Promise<Creds[]> => {
  const f = pinnedFetch(stack.cloud.caCert);
  const out: Creds[] = [];
  for (let i = 0; i < n; i++) {
    const { token } = await createRegistrationToken(stack.cloud.ctx.db, tenantId, 'fuzz', 600, Date.now());
    const keys = await newAgentKeys(`fuzz-${i}`);
    const res = await f(`${stack.cloud.url}/agent/v1/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...keys.body, token }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    const r = (await res.json()) as RegisterResponse;
    out.push({ certPem: r.certificate, keyPem: keys.keyPem });
  }
  return out;
};

/** One generated frame (or socket action) for the agent side. */
type Action =
  | { kind: 'text'; data: string }
  | { kind: 'binary'; data: Buffer }
  | { kind: 'close' }
  | { kind: 'reset' };

const generator = (rand: () => number) => {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const int = (n: number) => Math.floor(rand() * n);
  const str = (n: number) =>
    Array.from({ length: int(n) + 1 }, () =>
      pick(['a', 'Z', '0', '-', '_', '.', '@', 'é', '\u0000', '"', '\\']),
    ).join('');
  const runs = ['run-a', 'run-b', str(8)];
  // Most pages continue the connection's run in order, so they reach the database and are
  // acknowledged while the agent may already be hanging up (the crash of issue 10).
  const run = { id: 'run-a', seq: 0 };
  const user = () => ({
    anchor: str(20),
    upn: rand() < 0.8 ? `${str(10)}@fuzz-tenant.test` : str(300),
    dn: `CN=${str(12)},DC=fuzz`,
    enabled: rand() < 0.9,
    ...(rand() < 0.3 ? { displayName: str(40) } : {}),
  });
  const hello = () => ({
    type: 'hello',
    protocol: rand() < 0.9 ? PROTOCOL_VERSION : int(5),
    version: '0.1.0-fuzz',
    hostname: str(20),
    capabilities: ['validate', 'sync'],
    directory: {
      ok: rand() < 0.8,
      ...(rand() < 0.3 ? { lockoutPolicy: { threshold: int(20), durationS: int(3600) } } : {}),
    },
    clock: rand() < 0.9 ? Date.now() : int(2 ** 40),
  });
  const valid = (): Record<string, unknown> => {
    const r = rand();
    if (r < 0.15) return hello();
    if (r < 0.45)
      return { type: 'heartbeat', clock: Date.now(), directory: { ok: rand() < 0.9 }, inFlight: int(300) };
    if (r < 0.6)
      return {
        type: 'result',
        id: str(30),
        outcome: pick([
          'success',
          'invalid_credentials',
          'locked_out',
          'agent_error',
          'agent_decrypt_failed',
        ]),
        agentMs: rand() * 100,
        directoryMs: rand() * 100,
      };
    const inOrder = rand() < 0.75;
    if (inOrder && rand() < 0.15) Object.assign(run, { id: pick(runs), seq: 0 });
    return {
      type: 'sync.page',
      runId: inOrder ? run.id : pick(runs),
      mode: 'full',
      seq: inOrder ? run.seq++ : rand() < 0.5 ? int(4) : int(2 ** 31),
      users: Array.from({ length: int(rand() < 0.1 ? 120 : 10) }, user),
      final: rand() < 0.2,
    };
  };
  /** A valid message bent out of shape: a field of the wrong type, dropped or added. */
  const bent = (): Record<string, unknown> => {
    const m = valid();
    const keys = Object.keys(m);
    const k = pick(keys);
    const r = rand();
    if (r < 0.3) delete m[k];
    else if (r < 0.6) m[k] = pick([null, -1, 1e308, '', [], {}, 'x'.repeat(600), true]);
    else m[str(6)] = { nested: [[[[{ deep: str(10) }]]]] };
    return m;
  };
  const oversized = (): Action => ({
    kind: 'text',
    data: JSON.stringify({ type: 'heartbeat', pad: 'x'.repeat(MAX_FRAME_BYTES + int(4096)) }),
  });
  const next = (): Action => {
    const r = rand();
    if (r < 0.45) return { kind: 'text', data: JSON.stringify(valid()) };
    if (r < 0.65) return { kind: 'text', data: JSON.stringify(bent()) };
    if (r < 0.78) {
      const s = JSON.stringify(valid());
      return { kind: 'text', data: s.slice(0, int(s.length)) };
    }
    if (r < 0.84) return { kind: 'text', data: pick(['', 'null', '[]', '{}', '1', '"hello"', str(50)]) };
    if (r < 0.88)
      return { kind: 'binary', data: Buffer.from(Array.from({ length: int(64) }, () => int(256))) };
    if (r < 0.9) return oversized();
    if (r < 0.95) return { kind: 'close' };
    return { kind: 'reset' };
  };
  /** The next page of the connection's run, always in order. */
  const page = (): Action => {
    const users = Array.from({ length: 1 + int(60) }, user);
    const m = { type: 'sync.page', runId: run.id, mode: 'full', seq: run.seq++, users, final: rand() < 0.1 };
    return { kind: 'text', data: JSON.stringify(m) };
  };
  return {
    /** A new connection starts a new run. */
    start: () => {
      Object.assign(run, { id: pick(runs), seq: 0 });
    },
    next,
    page,
    oversized,
    /** A page the cloud refuses at once (out of order): answered with no database work between. */
    stray: (): Action => {
      const m = {
        type: 'sync.page',
        runId: run.id,
        mode: 'full',
        seq: run.seq + 1 + int(50),
        users: Array.from({ length: int(60) }, user),
        final: false,
      };
      return { kind: 'text', data: JSON.stringify(m) };
    },
  };
};

/** Runs `fn` with the socket corked, so what it sends reaches the cloud in one read. */
const pipelined = (ws: WebSocket, fn: () => void) => {
  const sock = (ws as unknown as { _socket?: import('node:net').Socket })._socket;
  sock?.cork();
  try {
    fn();
  } finally {
    process.nextTick(() => sock?.uncork());
  }
};

/** Opens a fuzz connection; resolves once it is open (or refused). */
const open = (creds: Creds): Promise<WebSocket | null> =>
  new Promise((resolve) => {
    const ws = new WebSocket(`${stack.cloud.gatewayUrl}${AGENT_CHANNEL_PATH}`, {
      ca: stack.cloud.caCert,
      cert: creds.certPem,
      key: creds.keyPem,
    });
    ws.on('error', () => resolve(null));
    ws.once('unexpected-response', () => resolve(null));
    ws.once('open', () => resolve(ws));
    // What the cloud answers is not checked here: only that it survives and lets go.
    ws.on('message', () => {});
  });

/**
 * One fuzz worker: connections one after another, each fed generated frames until it ends. Each
 * worker has its own generator seeded from SEED, so its frames replay exactly (their timing
 * against the other workers does not).
 */
const worker = async (creds: Creds[], rand: () => number, budget: { left: number; until: number }) => {
  const gen = generator(rand);
  const sendAction = (ws: WebSocket, a: Action) => {
    if (a.kind === 'close') ws.close(pick([1000, 1001, 1008, 4000]));
    else if (a.kind === 'reset') ws.terminate();
    else if (a.kind === 'binary') ws.send(a.data, { binary: true });
    else ws.send(a.data);
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  let connections = 0;
  while (budget.left > 0 && Date.now() < budget.until) {
    const ws = await open(pick(creds));
    connections++;
    if (!ws) continue;
    gen.start();
    const welcomed = new Promise<boolean>((resolve) => {
      ws.on('message', (d) => {
        if (String(d).includes('"welcome"')) resolve(true);
      });
      ws.once('close', () => resolve(false));
      setTimeout(() => resolve(false), 2_000).unref();
    });
    // Most connections start with a real hello so the frames behind it reach the handlers.
    if (rand() < 0.85)
      ws.send(
        JSON.stringify({
          type: 'hello',
          protocol: PROTOCOL_VERSION,
          version: '0.1.0-fuzz',
          hostname: 'fuzz',
          capabilities: ['validate', 'sync'],
          directory: { ok: true },
          clock: Date.now(),
        }),
      );
    // A third of the connections play the agent that hangs up on the cloud: welcomed, then sync
    // pages in order, pipelined, then a close, a reset or an oversized frame right behind them.
    if (rand() < 0.35 && (await welcomed)) {
      const pages = 1 + Math.floor(rand() * 8);
      for (let i = 0; i < pages && budget.left > 0 && ws.readyState === WebSocket.OPEN; i++, budget.left--)
        sendAction(ws, gen.page());
      // Sometimes the cloud has caught up (an idle chain answers in the same turn as the close).
      if (rand() < 0.5) await new Promise((r) => setTimeout(r, Math.floor(rand() * 100)));
      if (ws.readyState === WebSocket.OPEN) {
        // Corked: the last frames and the close leave in one TLS write, so the cloud reads the
        // close in the same turn as the frames it still has to answer.
        const tail: Action[] = rand() < 0.6 ? [gen.stray()] : [];
        tail.push(pick<Action>([{ kind: 'close' }, { kind: 'close' }, { kind: 'reset' }, gen.oversized()]));
        budget.left -= tail.length;
        pipelined(ws, () => {
          for (const a of tail) sendAction(ws, a);
        });
      }
    }
    const burst = 5 + Math.floor(rand() * 60);
    for (let i = 0; i < burst && budget.left > 0 && ws.readyState === WebSocket.OPEN; ) {
      // Runs of frames in one write, now and then a pause to let the cloud get a word in.
      const run = 1 + Math.floor(rand() * 6);
      pipelined(ws, () => {
        for (
          let j = 0;
          j < run && i < burst && budget.left > 0 && ws.readyState === WebSocket.OPEN;
          j++, i++
        ) {
          budget.left--;
          sendAction(ws, gen.next());
        }
      });
      if (rand() < 0.2) await new Promise((r) => setTimeout(r, Math.floor(rand() * 30)));
    }
    if (ws.readyState === WebSocket.OPEN) {
      if (rand() < 0.5) ws.close();
      else ws.terminate();
    }
  }
  return connections;
};

const gc = (): (() => void) => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
};

const memory = async (collect: () => void) => {
  for (let i = 0; i < 3; i++) {
    collect();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage();
};

test(`fuzzed agent frames from one tenant: another tenant's sign-ins keep working (seed ${SEED})`, async (t) => {
  t.diagnostic(`agent channel fuzz seed: ${SEED} (GATEHOUSE_FUZZ_SEED=${SEED} replays it)`);
  process.stdout.write(`agent channel fuzz seed: ${SEED}\n`);
  const fuzzTenant = await createTenant(stack.cloud.ctx, {
    name: 'Fuzz',
    domain: 'fuzz-tenant.test',
    admin: { upn: 'admin@fuzz-tenant.test', password: `Fuzz-admin-${SEED}-Pw1` },
  });
  const creds = await registerFuzzAgents(fuzzTenant.tenantId, 4);
  const user = `olive@${DOMAIN}`;
  assert.equal((await stack.passwordGrant(user, PW)).code, 'success', 'served tenant works before the fuzz');

  const collect = gc();
  const before = await memory(collect);
  const budget = { left: FRAMES, until: Date.now() + FUZZ_MS };

  // The other tenant signs in all along, one sign-in after another.
  const served: string[] = [];
  let fuzzing = true;
  const signIns = (async () => {
    while (fuzzing) {
      served.push((await stack.passwordGrant(user, PW)).code);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const workers = Array.from({ length: PARALLEL }, (_, i) => worker(creds, prng(SEED + i), budget));
  const connections = (await Promise.all(workers)).reduce((a, b) => a + b, 0);
  fuzzing = false;
  await signIns;
  const sent = FRAMES - budget.left;
  t.diagnostic(
    `${sent} frames over ${connections} connections; ${served.length} sign-ins of the other tenant`,
  );

  assert.deepEqual(
    escaped.map((e) => String((e as Error)?.stack ?? e)),
    [],
    'nothing reached the process',
  );
  assert.ok(sent >= 1_000, `enough frames were sent (${sent})`);
  assert.ok(served.length >= 10, `sign-ins ran throughout (${served.length})`);
  assert.deepEqual(
    served.filter((c) => c !== 'success'),
    [],
    'every sign-in of the other tenant succeeded during the fuzz',
  );
  assert.equal((await stack.passwordGrant(user, PW)).code, 'success', 'and after it');

  // Every fuzz connection is let go (closed, reset or dropped as silent); nothing stays parked.
  const deadline = Date.now() + 10_000;
  const left = () => stack.cloud.gateway.connections().filter((c) => c.tenantId === fuzzTenant.tenantId);
  while (left().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(left(), [], 'no fuzz connection left behind');

  const afterMem = await memory(collect);
  const heapGrowth = afterMem.heapUsed - before.heapUsed;
  const rssGrowth = afterMem.rss - before.rss;
  t.diagnostic(
    `heap ${(before.heapUsed / 2 ** 20).toFixed(1)} -> ${(afterMem.heapUsed / 2 ** 20).toFixed(1)} MiB, ` +
      `rss ${(before.rss / 2 ** 20).toFixed(1)} -> ${(afterMem.rss / 2 ** 20).toFixed(1)} MiB`,
  );
  // Generous: the cloud's captured log lives in this process too. A leak of one parked frame per
  // connection or per page would be well beyond this.
  assert.ok(heapGrowth < 64 * 2 ** 20, `heap grew by ${(heapGrowth / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(rssGrowth < 256 * 2 ** 20, `rss grew by ${(rssGrowth / 2 ** 20).toFixed(1)} MiB`);
});
