/**
 * The load generator, run as its own process by bench/run.ts so its CPU is not charged to the
 * cloud or the agent. One JSON argument says what to do:
 *   - `ldap`: raw simple binds with ldapts, one reused connection per worker (the ceiling);
 *   - `grant`: OAuth password grants over keep-alive HTTPS with a pinned CA (pass-through).
 * A fixed number of workers (the concurrency) loop for warm-up + duration seconds; only requests
 * that start inside the measured window count. Prints `measuring` when the window opens, `done`
 * when it closes (run.ts samples /proc around them), then one JSON line of results.
 *
 * Users are taken round-robin and a wrong password goes to a rotating tenth of them per pass, so
 * no user ever sees two wrong passwords in a row: neither the directory's lockout (OpenLDAP
 * ppolicy: 3, Samba: 5) nor smart lockout trips, and every wrong password reaches the directory
 * (each one is distinct, so the repeat-password shortcut never answers it).
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { Client } from 'ldapts';

export interface LoadSpec {
  mode: 'ldap' | 'grant';
  concurrency: number;
  warmupS: number;
  durationS: number;
  /** Percent of attempts with a wrong password (0-100, in steps of 10). */
  wrongPct: number;
  password: string;
  /** ldap: bind DNs; grant: user names. */
  users: string[];
  ldapUrl?: string;
  ldapCaFile?: string;
  tokenUrl?: string;
  /** Several cloud nodes: worker i uses tokenUrls[i % n] (overrides tokenUrl). */
  tokenUrls?: string[];
  caFile?: string;
  clientId?: string;
  scope?: string;
}

export interface LoadResult {
  mode: string;
  concurrency: number;
  seconds: number;
  requests: number;
  perSecond: number;
  correct: number;
  wrong: number;
  /** Answers that did not match the password sent (a correct one refused, a wrong one accepted). */
  unexpected: number;
  errors: Record<string, number>;
  p50: number;
  p95: number;
  p99: number;
  /** Correct passwords only: wrong ones are held to a floor on purpose (no enumeration by timing). */
  p50Correct: number;
  p99Correct: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;

let next = 0;
const pick = () => {
  const k = next++;
  const n = spec.users.length;
  const u = k % n;
  const wrong = (u + Math.floor(k / n)) % 10 < spec.wrongPct / 10;
  return { user: spec.users[u]!, wrong, password: wrong ? `Wrong-${k}-pw` : spec.password };
};

type Attempt = (user: string, password: string) => Promise<boolean>;

const ldapWorker = async (): Promise<{ attempt: Attempt; close: () => Promise<void> }> => {
  const client = new Client({
    url: spec.ldapUrl!,
    timeout: 10_000,
    connectTimeout: 10_000,
    ...(spec.ldapCaFile ? { tlsOptions: { ca: readFileSync(spec.ldapCaFile) } } : {}),
  });
  return {
    attempt: async (dn, pw) => {
      try {
        await client.bind(dn, pw);
        return true;
      } catch (err) {
        if ((err as { code?: number }).code === 49) return false;
        throw err;
      }
    },
    close: () => client.unbind().catch(() => {}),
  };
};

const grantWorker = (agent: Agent, w: number): Attempt => {
  const urls = spec.tokenUrls ?? [spec.tokenUrl!];
  const url = new URL(urls[w % urls.length]!);
  return (username, password) =>
    new Promise<boolean>((resolve, reject) => {
      const body = new URLSearchParams({
        grant_type: 'password',
        client_id: spec.clientId!,
        username,
        password,
        scope: spec.scope ?? 'openid',
      }).toString();
      const req = request(
        url,
        {
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.once('end', () => {
            if (res.statusCode === 200) return resolve(true);
            const text = Buffer.concat(chunks).toString();
            const code = (JSON.parse(text || '{}') as { error_code?: string }).error_code;
            if (res.statusCode === 400 && code === 'invalid_credentials') return resolve(false);
            reject(new Error(`HTTP ${res.statusCode} ${code ?? text.slice(0, 80)}`));
          });
          res.once('error', reject);
        },
      );
      req.once('error', reject);
      req.end(body);
    });
};

const main = async () => {
  const lat: number[] = [];
  const latCorrect: number[] = [];
  const errors: Record<string, number> = {};
  let correct = 0;
  let wrong = 0;
  let unexpected = 0;
  const t0 = performance.now();
  const start = t0 + spec.warmupS * 1000;
  const end = start + spec.durationS * 1000;
  let measuring = false;
  const agent = new Agent({
    keepAlive: true,
    maxSockets: spec.concurrency,
    ca: spec.caFile ? readFileSync(spec.caFile) : undefined,
  });

  const worker = async (_: unknown, i: number) => {
    const w =
      spec.mode === 'ldap' ? await ldapWorker() : { attempt: grantWorker(agent, i), close: async () => {} };
    for (;;) {
      const begun = performance.now();
      if (begun >= end) break;
      if (!measuring && begun >= start) {
        measuring = true;
        process.stdout.write('measuring\n');
      }
      const { user, password, wrong: isWrong } = pick();
      let ok: boolean | undefined;
      try {
        ok = await w.attempt(user, password);
      } catch (err) {
        const m = String((err as Error).message).slice(0, 120);
        if (begun >= start) errors[m] = (errors[m] ?? 0) + 1;
        // An error storm must not spin: give the system a moment.
        await new Promise((r) => setTimeout(r, 5));
      }
      if (begun < start) continue;
      const ms = performance.now() - begun;
      lat.push(ms);
      if (ok === undefined) continue;
      if (!isWrong) latCorrect.push(ms);
      if (isWrong) wrong++;
      else correct++;
      if (ok === isWrong) unexpected++;
    }
    await w.close();
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  process.stdout.write('done\n');
  agent.destroy();
  const seconds = Math.min(performance.now(), end) - start;
  lat.sort((a, b) => a - b);
  latCorrect.sort((a, b) => a - b);
  const q = (p: number, xs = lat) =>
    xs.length ? Math.round(xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]! * 1000) / 1000 : 0;
  const result: LoadResult = {
    mode: spec.mode,
    concurrency: spec.concurrency,
    seconds: Math.round(seconds) / 1000,
    requests: lat.length,
    perSecond: Math.round((correct + wrong) / (seconds / 1000)),
    correct,
    wrong,
    unexpected,
    errors,
    p50: q(0.5),
    p95: q(0.95),
    p99: q(0.99),
    p50Correct: q(0.5, latCorrect),
    p99Correct: q(0.99, latCorrect),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
};

await main();
