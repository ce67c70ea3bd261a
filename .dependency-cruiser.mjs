/**
 * The layers' rules, checked by `npm test -- boundaries` (dependency-cruiser). docs/architecture.md
 * ("## Layers") draws the same picture. Type-only imports count: a layer that names an upper
 * layer's types depends on it as much as one that calls it.
 */
const cloud = (...parts) => parts.map((p) => `^apps/cloud/src/${p}`);

/**
 * The cloud's layers, top first. A module imports only layers below its own, never above; the
 * cross-cutting modules (last) are importable from every layer and import no layer but db/.
 */
const LAYERS = [
  ['composition', cloud('(server|main|cli|bootstrap|listeners|retention)\\.ts$', 'cli/')],
  ['http', cloud('http/', 'metrics/(health|listener)\\.ts$')],
  ['features', cloud('oidc/', 'admin/', 'gateway/')],
  ['web', cloud('web/')],
  ['signin', cloud('signin/')],
  ['lockout', cloud('lockout/')],
  ['store', cloud('store/')],
  ['db', cloud('db/')],
];
const CROSS = cloud(
  '(config|context|secrets|process-policy)\\.ts$',
  'metrics/(families|observe|sources)\\.ts$',
);

const layerRules = LAYERS.slice(1).map(([name, path], i) => ({
  name: `layer-${name}`,
  comment: `${name} imports only layers below it (${LAYERS.slice(i + 2)
    .map(([n]) => n)
    .join(', ')}) and the cross-cutting modules`,
  severity: 'error',
  from: { path },
  to: { path: LAYERS.slice(0, i + 1).flatMap(([, p]) => p) },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    ...layerRules,
    {
      name: 'cross-cutting',
      comment: 'config, context, secrets, process policy and metric families import no layer but db (types)',
      severity: 'error',
      from: { path: CROSS },
      to: { path: LAYERS.slice(0, -1).flatMap(([, p]) => p) },
    },
    {
      name: 'features-peers',
      comment: 'oidc and gateway are peers and serve admin: neither imports admin, nor each other',
      severity: 'error',
      from: { path: cloud('(oidc|gateway)/') },
      to: { path: cloud('admin/') },
    },
    {
      name: 'oidc-gateway',
      severity: 'error',
      from: { path: cloud('oidc/') },
      to: { path: cloud('gateway/') },
    },
    {
      name: 'gateway-oidc',
      severity: 'error',
      from: { path: cloud('gateway/') },
      to: { path: cloud('oidc/') },
    },
    {
      name: 'packages-not-apps',
      comment: 'apps depend on packages, never the reverse',
      severity: 'error',
      from: { path: '^packages/' },
      to: { path: '^apps/' },
    },
    {
      name: 'apps-not-each-other',
      comment: 'an app imports packages, not another app (root test/ and bench/ may)',
      severity: 'error',
      from: { path: '^apps/([^/]+)/src/' },
      to: { path: '^apps/', pathNot: '^apps/$1/' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'node', 'default'] },
  },
};
