export * from './cli.ts';
export * from './errors.ts';
// Named, so hpke.ts's test-only sealWithEphemeral (deterministic ephemeral key) stays internal.
export {
  generateHpkeKeyPair,
  type HpkeKeyPair,
  hpkeOpen,
  hpkePublicKey,
  hpkeSeal,
  type Sealed,
} from './hpke.ts';
export * from './ids.ts';
export * from './messages.ts';
export * from './pki.ts';
export * from './relay.ts';
