/**
 * What the scrape-time gauges read: each running cloud registers its own state here (a process
 * normally runs one; tests run several, whose figures add up). Nothing here runs on a sign-in.
 */

export type AgentBucket = '0' | '1' | '2' | '3+';
export const AGENT_BUCKETS: readonly AgentBucket[] = ['0', '1', '2', '3+'];

export interface MetricSource {
  /** This node's agent connections. */
  connections(): { ready: number; hello: number };
  /** Tenants with pass-through on, by active agents (from the database: the whole cluster). */
  tenantsByAgents(): Promise<Record<AgentBucket, number>>;
  /** Scale-out: whether NATS is connected; undefined in the embedded shape. */
  nats(): boolean | undefined;
}

/** The parts of a pg Pool the gauges read. */
export interface PoolLike {
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
  readonly ended?: boolean;
}

export const sources = new Set<MetricSource>();
export const pools = new Set<PoolLike>();

/** Registers a running cloud's state; returns the function that removes it (at stop). */
export const addSource = (s: MetricSource): (() => void) => {
  sources.add(s);
  return () => sources.delete(s);
};

/** A PostgreSQL pool, read until it ends. */
export const observePool = (pool: PoolLike): void => {
  pools.add(pool);
};

export const bucketOf = (agents: number): AgentBucket =>
  agents >= 3 ? '3+' : (String(agents) as AgentBucket);

/** Settles within `ms`: a scrape must not hang on a database that does not answer. */
export const within = <T>(p: Promise<T>, ms: number): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(resolve, reject).finally(() => clearTimeout(t));
  });
