/**
 * Heap relief for a sync run. A full read parses the whole directory (100,000 users: 60-80 MB
 * live by its end) and drops far more than it keeps: LDAP messages, entries, validation copies,
 * normalised DNs. V8 lets its heap grow to about four times the live size between full
 * collections while a program allocates this fast, and the pages it grew into stay in RSS: the
 * agent peaked at 260-310 MB. No V8 flag bounds that without a cost paid on every sign-in too
 * (`--heap-growing-percent`, `--optimize-for-size`) or a crash on a bigger directory
 * (`--max-old-space-size`). So while a run is in progress the heap is collected whenever it has
 * grown to GROWTH times what the last collection left (192-196 MB peak, 1.3-2.1 s more agent CPU a
 * full run: docs/benchmarks.md). Timers cannot fire inside a long synchronous loop, so those loops
 * call heapCheckpoint(). It needs `gc`, which the agent's service flags expose (`--expose-gc`,
 * AGENT_NODE_FLAGS); without it this does nothing.
 */
import { getHeapStatistics } from 'node:v8';

const MiB = 1024 * 1024;
/** Collect once the heap is this many times what the last collection left. */
const GROWTH = 1.3;

export interface HeapReliefOptions {
  gc?: () => void;
  /** Bytes of heap in use (default V8's used_heap_size). */
  used?: () => number;
  everyMs?: number;
  /** Never collect below this; small runs are left to V8. */
  floorBytes?: number;
}

export interface HeapRelief {
  /** Full collections it asked for. */
  readonly collections: number;
  stop(): void;
}

/** The run's relief, for the checkpoints of loops that do not yield to the timer. */
let active: (() => void) | undefined;

/** Collects now if a run is in progress and its heap has grown past its limit. */
export const heapCheckpoint = (): void => active?.();

/** Starts relief for one run (runs do not overlap: SyncRunner). */
export const startHeapRelief = (opts: HeapReliefOptions = {}): HeapRelief => {
  const gc = opts.gc ?? (globalThis as { gc?: () => void }).gc;
  let collections = 0;
  if (!gc) return { collections, stop() {} };
  const used = opts.used ?? (() => getHeapStatistics().used_heap_size);
  const floor = opts.floorBytes ?? 48 * MiB;
  let limit = floor;
  const collect = () => {
    gc();
    collections++;
    limit = Math.max(floor, GROWTH * used());
  };
  // What the last run left (its pages, its garbage) must not set this run's limit.
  if (used() > floor) collect();
  const check = () => {
    if (used() >= limit) collect();
  };
  active = check;
  // Between checkpoints (LDAP parsing, AD's per-user reads) the timer looks.
  const timer = setInterval(check, opts.everyMs ?? 50);
  timer.unref();
  return {
    get collections() {
      return collections;
    },
    stop: () => {
      clearInterval(timer);
      if (active === check) active = undefined;
      // The run's pages and reads are garbage now: give the heap back its idle size at once.
      if (collections > 0) collect();
    },
  };
};
