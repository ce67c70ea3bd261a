/**
 * Nested group membership from the groups' direct member lists, resolved upward from each user.
 *
 * Built for directories of 100,000 users (docs/benchmarks.md, sync): member values are sorted as
 * they are added (a full run adds each LDAP page's as it comes), so the lists are never all held
 * at once. A value naming a synced user keeps only the group's index under that user; anything
 * else (possibly a nested group) keeps its normalised DN until the end, when it becomes a
 * group-to-group edge. The walk uses group
 * indexes and one visit stamp per group instead of a set per user, so a cycle still ends.
 */

import { heapCheckpoint } from '../heap.ts';

export const normDn = (dn: string) => dn.toLowerCase().replace(/\s*([,=])\s*/g, '$1');

/** uniqueMember values may carry an optional `#'0101'B` unique identifier after the DN. */
const memberDn = (v: string) => v.replace(/#'[01]*'B$/, '');

export class Nesting {
  /** User normalised DN -> anchor (the synced users). */
  readonly #users: Map<string, string>;
  readonly #anchors: string[] = [];
  readonly #index = new Map<string, number>();
  /** User anchor -> indexes of the groups that list the user. */
  readonly #direct = new Map<string, number[]>();
  /** Other member DN (normalised) -> indexes of the groups that list it. */
  readonly #other = new Map<string, number[]>();
  #added = 0;

  constructor(users: Map<string, string>) {
    this.#users = users;
  }

  /** A group read; its index for addMembers. */
  addGroup(anchor: string, dn: string): number {
    const i = this.#anchors.length;
    this.#anchors.push(anchor);
    this.#index.set(normDn(dn), i);
    return i;
  }

  addMembers(group: number, members: Iterable<string>): void {
    for (const m of members) {
      // Two strings of garbage a member, hundreds of thousands of members: let the run's relief look.
      if (++this.#added % 4096 === 0) heapCheckpoint();
      const k = normDn(memberDn(m));
      const user = this.#users.get(k);
      const map = user === undefined ? this.#other : this.#direct;
      const key = user ?? k;
      const list = map.get(key);
      if (list) list.push(group);
      else map.set(key, [group]);
    }
  }

  /** User anchor -> anchors of every group the user is in, at any depth. */
  resolve(): Map<string, string[]> {
    const parents: number[][] = this.#anchors.map(() => []);
    for (const [dn, groups] of this.#other) {
      const child = this.#index.get(dn);
      if (child !== undefined) parents[child]!.push(...groups);
    }
    this.#other.clear();
    const stamp = new Uint32Array(this.#anchors.length);
    let visit = 0;
    const out = new Map<string, string[]>();
    for (const anchor of this.#users.values()) {
      if (++visit % 4096 === 0) heapCheckpoint();
      const found: string[] = [];
      const stack: number[] = [];
      const reach = (g: number) => {
        if (stamp[g] === visit) return;
        stamp[g] = visit;
        found.push(this.#anchors[g]!);
        stack.push(g);
      };
      for (const g of this.#direct.get(anchor) ?? []) reach(g);
      while (stack.length > 0) for (const p of parents[stack.pop()!]!) reach(p);
      out.set(anchor, found);
    }
    return out;
  }
}
