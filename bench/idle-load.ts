/**
 * Many idle agents from one process, for `npm run bench -- --scenario idle-agents`. Each one is
 * registered through the real registration API (its own TLS key, CSR and HPKE key, a one-time
 * token) and then holds a real mutual-TLS WebSocket that speaks the agent protocol: Hello, then
 * a ping and a Heartbeat every heartbeatMs the cloud asked for. A lost connection comes back
 * with the agent's own jittered backoff (apps/agent/src/backoff.ts).
 *
 * Argument: JSON { cloudUrl, caFile, tokensFile, stateRoot, goFile, gatewayUrls? }. Connections
 * start once goFile exists (so the orchestrator can read the cloud's memory before). With
 * `gatewayUrls` (scale-out), each agent starts at the first and moves to the next one after every
 * lost connection, as the agent does, and answers a `reconnect` frame the agent's way: a new
 * connection to the next URL, and the old one closed once the new one is welcomed. Reports on
 * stdout: `registered K`, then `connected K welcomes W moves M on N0,N1,...` whenever those change.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_CHANNEL_PATH, MAX_FRAME_BYTES, PROTOCOL_VERSION } from '@gatehouse/protocol';
import WebSocket from 'ws';
import { Backoff } from '../apps/agent/src/backoff.ts';
import { register } from '../apps/agent/src/register.ts';
import { type AgentState, loadAgentState } from '../apps/agent/src/state.ts';

const spec = JSON.parse(process.argv[2] ?? '{}') as {
  cloudUrl: string;
  caFile: string;
  tokensFile: string;
  stateRoot: string;
  goFile: string;
  gatewayUrls?: string[];
};
const caPem = readFileSync(spec.caFile, 'utf8');
const tokens = readFileSync(spec.tokensFile, 'utf8').trim().split('\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let connected = 0;
let welcomes = 0;
let moves = 0;
const urls = spec.gatewayUrls ?? [];
const on = urls.map(() => 0);
let reported = '';
const report = () => {
  const line = `connected ${connected} welcomes ${welcomes} moves ${moves} on ${on.join(',')}`;
  if (line !== reported) process.stdout.write(`${line}\n`);
  reported = line;
};
setInterval(report, 200);

const pool = async <T>(items: T[], n: number, fn: (item: T, i: number) => Promise<void>) => {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
};

const states: AgentState[] = [];
await pool(tokens, 8, async (token, i) => {
  const stateDir = join(spec.stateRoot, `a${i}`);
  await register({ cloud: spec.cloudUrl, caPem, stateDir, token, hostname: `idle-${i}`, print: () => {} });
  states[i] = loadAgentState(stateDir);
});
process.stdout.write(`registered ${states.length}\n`);
while (!existsSync(spec.goFile)) await sleep(100);

const hold = (state: AgentState) => {
  const backoff = new Backoff();
  const gateways = urls.length > 0 ? urls : [state.gatewayUrl];
  let next = 0;
  /** One connection; `onWelcome` runs once it is welcomed. Returns a closer. */
  const open = (onWelcome: () => void, onEnd: (welcomed: boolean) => void) => {
    const g = next++ % gateways.length;
    const sock = new WebSocket(`${gateways[g]!.replace(/\/+$/, '')}${AGENT_CHANNEL_PATH}`, {
      ca: state.cloudCaPem,
      key: state.keyPem,
      cert: state.certPem,
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: 15_000,
      perMessageDeflate: false,
    });
    let hb: NodeJS.Timeout | undefined;
    let up = false;
    const send = (m: object) => sock.readyState === WebSocket.OPEN && sock.send(JSON.stringify(m));
    sock.on('open', () =>
      send({
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        version: '0.1.0',
        hostname: 'idle',
        capabilities: ['validate', 'reconnect'],
        directory: { ok: true },
        clock: Date.now(),
      }),
    );
    sock.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { type: string; heartbeatMs?: number; jitterMs?: number };
      if (msg.type === 'reconnect' && up) return moveAsked(msg.jitterMs ?? 0, sock);
      if (msg.type !== 'welcome' || up) return;
      up = true;
      connected++;
      welcomes++;
      if (urls.length) on[g]!++;
      hb = setInterval(() => {
        sock.ping();
        send({ type: 'heartbeat', clock: Date.now(), directory: { ok: true }, inFlight: 0 });
      }, msg.heartbeatMs ?? 10_000);
      onWelcome();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      clearInterval(hb);
      if (up) {
        connected--;
        if (urls.length) on[g]!--;
      }
      onEnd(up);
    });
    return sock;
  };
  let current: WebSocket | undefined;
  let moving = false;
  // Idle agents hold no requests: a move hands over at once (the real agent drains first).
  const moveAsked = (jitterMs: number, from: WebSocket) => {
    if (moving || from !== current) return;
    moving = true;
    setTimeout(() => {
      const sock = open(
        () => {
          moving = false;
          // The old one dropped meanwhile and was replaced: this one is surplus.
          if (current !== from) return sock.close(1000, 'surplus');
          moves++;
          current = sock;
          from.close(1000, 'moved');
        },
        (welcomed) => {
          if (!welcomed) moving = false;
          else if (current === sock) lost();
        },
      );
    }, Math.random() * jitterMs);
  };
  const lost = () => {
    backoff.disconnected();
    setTimeout(connect, backoff.next());
  };
  const connect = () => {
    const sock = open(
      () => backoff.connected(),
      () => {
        if (current === sock) lost();
        else if (current === undefined) lost();
      },
    );
    current = sock;
  };
  connect();
};

// A burst of thousands of handshakes at once would only measure the accept queue: pace them.
for (const s of states) {
  hold(s);
  await sleep(1);
}
