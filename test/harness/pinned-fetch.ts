/** The CA-pinning fetch lives with the sample app (its one production user); tests share it. */
export { pinnedFetch } from '../../apps/sample-app/src/pinned-fetch.ts';
