/**
 * Many idle agents from one process, for `npm run bench -- --scenario idle-agents`. Each one is
 * registered through the real registration API (its own TLS key, CSR and HPKE key, a one-time
 * token) and then holds a real mutual-TLS WebSocket that speaks the agent protocol: Hello, then
 * a ping and a Heartbeat every heartbeatMs the cloud asked for. A lost connection comes back
 * with the agent's own jittered backoff (apps/agent/src/backoff.ts).
 *
 * Argument: JSON { cloudUrl, caFile, tokensFile, stateRoot, goFile }. Connections start once
 * goFile exists (so the orchestrator can read the cloud's memory before). Reports on stdout:
 * `registered K`, then `connected K welcomes W` whenever those change.
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
};
const caPem = readFileSync(spec.caFile, 'utf8');
const tokens = readFileSync(spec.tokensFile, 'utf8').trim().split('\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let connected = 0;
let welcomes = 0;
let reported = '';
const report = () => {
  const line = `connected ${connected} welcomes ${welcomes}`;
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
  const connect = () => {
    const sock = new WebSocket(`${state.gatewayUrl.replace(/\/+$/, '')}${AGENT_CHANNEL_PATH}`, {
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
        capabilities: ['validate'],
        directory: { ok: true },
        clock: Date.now(),
      }),
    );
    sock.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { type: string; heartbeatMs?: number };
      if (msg.type !== 'welcome' || up) return;
      up = true;
      connected++;
      welcomes++;
      backoff.connected();
      hb = setInterval(() => {
        sock.ping();
        send({ type: 'heartbeat', clock: Date.now(), directory: { ok: true }, inFlight: 0 });
      }, msg.heartbeatMs ?? 10_000);
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      clearInterval(hb);
      if (up) connected--;
      backoff.disconnected();
      setTimeout(connect, backoff.next());
    });
  };
  connect();
};

// A burst of thousands of handshakes at once would only measure the accept queue: pace them.
for (const s of states) {
  hold(s);
  await sleep(1);
}
