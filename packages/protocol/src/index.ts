export * from './errors.ts';
export * from './messages.ts';
export * from './hpke.ts';
export * from './pki.ts';
