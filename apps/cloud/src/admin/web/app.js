// Gatehouse admin center: signs in with the tenant's own OIDC provider (authorization code + PKCE,
// public client) and uses only the public admin API. The access token lives in sessionStorage.
// DOM is built with createElement/textContent only, never innerHTML, so no data becomes markup.
import { appsPage } from './apps.js';

const tenantId = decodeURIComponent(location.pathname.split('/')[1]);
const base = `/${encodeURIComponent(tenantId)}`;
const issuer = `${location.origin}${base}/v2.0`;
const CLIENT_ID = 'gatehouse-admin-center';
const redirectUri = `${location.origin}${base}/admin/callback`;
const KEY = `gh-admin:${tenantId}`;
const main = document.getElementById('main');
const statusEl = document.getElementById('status');
let me = null;
let refreshTimer = null;

const h = (tag, attrs = {}, ...kids) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false) el.append(kid);
  return el;
};
const say = (msg) => {
  statusEl.textContent = '';
  setTimeout(() => (statusEl.textContent = msg), 50);
};
const when = (ms) => (ms ? new Date(ms).toLocaleString('en-GB') : '—');
const b64url = (bytes) =>
  btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');
const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
const can = (p) => me?.permissions.includes(p);

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error;
    this.detail = body?.detail;
  }
}

const token = () => {
  const t = JSON.parse(sessionStorage.getItem(KEY) ?? 'null');
  return t && t.expiresAt > Date.now() ? t.accessToken : null;
};

const api = async (path, opts = {}) => {
  const res = await fetch(`${base}/api/v1${path}`, {
    method: opts.method ?? 'GET',
    headers: {
      authorization: `Bearer ${token()}`,
      ...(opts.body ? { 'content-type': 'application/json' } : {}),
    },
    body: opts.body ? JSON.stringify(opts.body) : undefined,
  });
  if (opts.raw && res.ok) return res;
  const body = res.headers.get('content-type')?.includes('json') ? await res.json() : null;
  if (res.status === 401) {
    sessionStorage.removeItem(KEY);
    renderSignIn('Your session has ended. Sign in again.');
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
};

const errorText = (err) => `${err.message}${err.code ? ` (${err.code})` : ''}`;
const alertBox = (err) => h('p', { class: 'alert', role: 'alert' }, errorText(err));

// ---- sign-in ----
const signIn = async () => {
  const verifier = random();
  const state = random();
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem(`${KEY}:pkce`, JSON.stringify({ verifier, state, hash: location.hash }));
  const q = new URLSearchParams({
    client_id: CLIENT_ID,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: 'openid profile',
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  location.assign(`${issuer}/auth?${q}`);
};

const finishSignIn = async () => {
  const params = new URLSearchParams(location.search);
  const saved = JSON.parse(sessionStorage.getItem(`${KEY}:pkce`) ?? 'null');
  sessionStorage.removeItem(`${KEY}:pkce`);
  if (params.get('error')) throw new Error(params.get('error_description') ?? params.get('error'));
  if (!saved || params.get('state') !== saved.state)
    throw new Error('The sign-in response does not match this browser.');
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code') ?? '',
      redirect_uri: redirectUri,
      client_id: CLIENT_ID,
      code_verifier: saved.verifier,
    }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error_description ?? body.error ?? 'The sign-in failed.');
  sessionStorage.setItem(
    KEY,
    JSON.stringify({ accessToken: body.access_token, expiresAt: Date.now() + (body.expires_in - 30) * 1000 }),
  );
  history.replaceState(null, '', `${base}/admin/${saved.hash || '#overview'}`);
};

const renderSignIn = (message) => {
  clearInterval(refreshTimer);
  document.getElementById('nav').hidden = true;
  document.getElementById('signout').hidden = true;
  document.getElementById('who').textContent = '';
  main.replaceChildren(
    h('h1', { tabindex: '-1' }, 'Sign in to the admin center'),
    message ? h('p', { class: 'alert', role: 'alert' }, message) : null,
    h(
      'p',
      {},
      `Tenant ${tenantId}. Use a Global Administrator, Hybrid Identity Administrator or Reader account.`,
    ),
    h('button', { type: 'button', onclick: signIn }, 'Sign in'),
  );
};

// ---- helpers for pages ----
const table = (label, headers, rows) =>
  h(
    'div',
    { class: 'scroll', role: 'region', 'aria-label': label, tabindex: '0' },
    h(
      'table',
      {},
      h('caption', { class: 'visually-hidden' }, label),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          headers.map((x) => h('th', { scope: 'col' }, x)),
        ),
      ),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length }, 'None.'))),
    ),
  );
const field = (id, label, input) =>
  h('div', { class: 'field' }, h('label', { for: id }, label), Object.assign(input, { id }));
const refreshEvery = (ms, fn) => {
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => document.visibilityState === 'visible' && fn().catch(() => {}), ms);
};
const switchButton = (label, on, onToggle, disabled) =>
  h(
    'button',
    {
      type: 'button',
      role: 'switch',
      class: 'switch',
      'aria-checked': String(on),
      'aria-label': label,
      disabled,
      onclick: onToggle,
    },
    on ? 'On' : 'Off',
  );

// ---- pages ----
const pages = {};

pages.overview = async (root) => {
  const o = await api('/overview');
  const t = o.tenant;
  const msg = h('div', { 'aria-live': 'polite' });
  const toggle = (key, value) => async () => {
    msg.replaceChildren();
    try {
      await api('/settings', { method: 'PATCH', body: { [key]: value } });
      say('Saved.');
      await show('overview');
    } catch (err) {
      msg.replaceChildren(alertBox(err));
    }
  };
  const sync = o.sync;
  root.append(
    // A failed, stalled or overdue sync is said first: its users' changes are not reaching the cloud.
    ...(sync.problem
      ? [h('p', { class: 'alert', role: 'alert', 'data-testid': 'sync-problem' }, sync.message)]
      : []),
    h('h2', {}, 'Sign-in methods'),
    h(
      'div',
      { class: 'setting' },
      h('span', { class: 'name', id: 'pta-label' }, 'Pass-through authentication'),
      h(
        'span',
        { class: t.ptaEnabled ? 'state-on' : 'state-off', 'data-testid': 'pta-state' },
        t.ptaEnabled ? 'Enabled' : 'Disabled',
      ),
      can('hybrid')
        ? switchButton('Pass-through authentication', t.ptaEnabled, toggle('ptaEnabled', !t.ptaEnabled))
        : null,
      !t.ptaEnabled && o.pta.refusal ? h('span', { class: 'note' }, o.pta.refusal) : null,
    ),
    h(
      'div',
      { class: 'setting' },
      h('span', { class: 'name' }, 'Legacy authentication (password grant)'),
      h('span', { class: t.legacyAuth ? 'state-on' : 'state-off' }, t.legacyAuth ? 'Allowed' : 'Blocked'),
      can('hybrid')
        ? switchButton('Legacy authentication', t.legacyAuth, toggle('legacyAuth', !t.legacyAuth))
        : null,
    ),
    h(
      'div',
      { class: 'setting' },
      h('span', { class: 'name' }, 'Just-in-time users (sign-in by a name not synced yet)'),
      h(
        'span',
        { class: t.jitUsers ? 'state-on' : 'state-off', 'data-testid': 'jit-state' },
        t.jitUsers ? 'Enabled' : 'Disabled',
      ),
      can('hybrid') ? switchButton('Just-in-time users', t.jitUsers, toggle('jitUsers', !t.jitUsers)) : null,
    ),
    msg,
    h('h2', {}, 'Directory sync'),
    h(
      'p',
      { 'data-testid': 'sync-state' },
      h('strong', { class: sync.problem ? 'state-off' : 'state-on' }, syncStates[sync.state] ?? sync.state),
      ` · ${sync.message}`,
      sync.lastRun
        ? ` Last run: ${sync.lastRun.mode}, ${sync.lastRun.status}, ${when(sync.lastRun.startedAt)}.`
        : '',
      ` Last success: ${sync.lastSuccessAt ? when(sync.lastSuccessAt) : 'never'}.`,
    ),
    h('h2', {}, 'At a glance'),
    h(
      'dl',
      { class: 'cards' },
      [
        ['Users', o.counts.users],
        ['Synced users', o.counts.syncedUsers],
        ['Cloud-only users', o.counts.cloudUsers],
        ['Agents', o.counts.agents],
        ['Active agents', o.counts.activeAgents],
        ['Sign-ins (last hour)', o.counts.signInsLastHour],
        ['Failed sign-ins (last hour)', o.counts.failuresLastHour],
      ].map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, String(v)))),
    ),
  );
};

const syncStates = {
  ok: 'Healthy',
  running: 'Running',
  never: 'No run yet',
  guarded: 'Deletions held back',
  failed: 'Failed',
  stalled: 'Stalled',
  overdue: 'Overdue',
};

/** "+added ~updated −deleted (seen)" for users or groups of a sync run. */
const runCounts = (c, what) =>
  `+${c[`${what}Added`]} ~${c[`${what}Updated`]} −${c[`${what}Deleted`]} (${c[`${what}Seen`]})`;

pages.pta = async (root) => {
  const holder = h('div');
  const msg = h('div', { 'aria-live': 'polite' });
  const load = async () => {
    const [o, agents, runs] = await Promise.all([
      api('/overview'),
      api('/agents'),
      api('/sync/runs?limit=5'),
    ]);
    const del = (a) => async () => {
      if (!confirm(`Delete agent ${a.machineName}? Its certificate stops working at once.`)) return;
      try {
        await api(`/agents/${encodeURIComponent(a.id)}`, { method: 'DELETE' });
        say(`Agent ${a.machineName} deleted.`);
        await load();
      } catch (err) {
        msg.replaceChildren(alertBox(err));
      }
    };
    holder.replaceChildren(
      h(
        'p',
        {},
        'Status: ',
        h(
          'strong',
          { class: o.tenant.ptaEnabled ? 'state-on' : 'state-off' },
          o.tenant.ptaEnabled ? 'Enabled' : 'Disabled',
        ),
        ` · ${o.counts.activeAgents} of ${agents.length} agents active`,
      ),
      table(
        'Authentication agents',
        [
          'Machine name',
          'External IP',
          'Version',
          'Status',
          'Last seen',
          'Certificate expires',
          'Sign-ins (1 h)',
          'Failures (1 h)',
          can('hybrid') ? 'Actions' : '',
        ],
        agents.map((a) =>
          h(
            'tr',
            { 'data-agent': a.id },
            h('td', {}, a.machineName),
            h('td', {}, a.externalIp ?? '—'),
            h('td', {}, a.version),
            h('td', { class: a.status }, a.status === 'active' ? 'Active' : 'Inactive'),
            h('td', {}, when(a.lastSeenAt)),
            h('td', {}, when(a.certNotAfter)),
            h('td', {}, String(a.signInsLastHour)),
            h('td', {}, String(a.failuresLastHour)),
            h(
              'td',
              {},
              can('hybrid')
                ? h(
                    'button',
                    {
                      type: 'button',
                      class: 'danger',
                      'aria-label': `Delete agent ${a.machineName}`,
                      onclick: del(a),
                    },
                    'Delete',
                  )
                : '',
            ),
          ),
        ),
      ),
      table(
        'Directory sync runs',
        [
          'Started',
          'Kind',
          'Status',
          'Pages',
          'Users (+ ~ −)',
          'Groups (+ ~ −)',
          'Skipped',
          'Agent and DC',
          'Error',
        ],
        runs.map((r) =>
          h(
            'tr',
            { 'data-run': r.id },
            h('td', {}, when(r.startedAt)),
            h('td', {}, r.mode),
            h('td', { class: r.status === 'succeeded' ? 'active' : 'inactive' }, r.status),
            h('td', {}, r.totalPages ? `${r.pages} of ${r.totalPages}` : String(r.pages)),
            h('td', {}, runCounts(r.counts, 'users')),
            h('td', {}, runCounts(r.counts, 'groups')),
            h('td', {}, String(r.counts.skipped)),
            h('td', {}, `${r.agentId}${r.server ? ` · ${r.server}` : ''}`),
            h('td', {}, r.error ?? ''),
          ),
        ),
      ),
    );
  };
  await load();
  root.append(
    h(
      'p',
      {},
      'Agents validate passwords against your directory. They connect outbound only. Install at least two for high availability.',
    ),
    h(
      'div',
      { class: 'row' },
      h(
        'button',
        { type: 'button', class: 'secondary', onclick: () => load().then(() => say('Refreshed.')) },
        'Refresh',
      ),
      can('hybrid') ? h('a', { class: 'button', href: '#download' }, 'Download agent') : null,
      can('hybrid')
        ? h(
            'button',
            {
              type: 'button',
              class: 'secondary',
              onclick: async () => {
                try {
                  msg.replaceChildren(h('p', { class: 'info' }, 'Sync running…'));
                  // The answer waits for the run (up to a minute) and says what it did.
                  const r = await api('/sync?wait=60', { method: 'POST' });
                  const text = r.run
                    ? `Sync ${r.run.status}: users ${runCounts(r.run.counts, 'users')}, groups ${runCounts(r.run.counts, 'groups')}.`
                    : `Sync requested from agent ${r.agentId}; it has not started yet.`;
                  say(text);
                  msg.replaceChildren(h('p', { class: 'info' }, text));
                  await load();
                } catch (err) {
                  msg.replaceChildren(alertBox(err));
                }
              },
            },
            'Sync now',
          )
        : null,
    ),
    msg,
    holder,
  );
  refreshEvery(5000, load);
};

pages.download = async (root) => {
  const out = h('div', { 'aria-live': 'polite' });
  const dl = h('div', { 'aria-live': 'polite' });
  const download = async () => {
    try {
      const res = await api('/agent-package', { raw: true });
      const blob = await res.blob();
      const a = h('a', { href: URL.createObjectURL(blob), download: 'gatehouse-agent.mjs' });
      document.body.append(a);
      a.click();
      a.remove();
      dl.replaceChildren(
        h(
          'p',
          { class: 'info' },
          `Downloaded gatehouse-agent.mjs, version ${res.headers.get('x-agent-version')}, SHA-256 `,
          h('code', {}, res.headers.get('x-content-sha256')),
        ),
      );
    } catch (err) {
      dl.replaceChildren(alertBox(err));
    }
  };
  const create = async () => {
    try {
      const r = await api('/registration-tokens', { method: 'POST', body: {} });
      const block = (title, text) => [
        h('h3', {}, title),
        h('pre', { tabindex: '0', 'aria-label': title }, h('code', {}, text)),
      ];
      out.replaceChildren(
        h('h2', {}, 'Registration token'),
        h('p', {}, 'Single use, expires ', when(r.expiresAt), '. It is shown once.'),
        h('p', {}, h('code', { 'data-testid': 'registration-token' }, r.token)),
        h(
          'p',
          {},
          'Cloud CA fingerprint (SHA-256): ',
          h('code', { 'data-testid': 'ca-fingerprint' }, r.caFingerprint),
        ),
        ...block('1. Install the agent and the cloud CA', r.commands.ca),
        ...block('2. Register the agent', r.commands.register),
        ...block('3. Describe your directory', r.commands.configure),
        ...block('4. Run it as a systemd service', r.commands.service),
      );
      say('Registration token created.');
    } catch (err) {
      out.replaceChildren(alertBox(err));
    }
  };
  root.append(
    h(
      'p',
      {},
      'The agent is one JavaScript file that Node.js 22 or later runs on a Linux server next to your domain controllers. It needs outbound HTTPS to this service only.',
    ),
    h(
      'div',
      { class: 'row' },
      h('button', { type: 'button', onclick: download, disabled: !can('hybrid') }, 'Download agent'),
      h(
        'button',
        { type: 'button', class: 'secondary', onclick: create, disabled: !can('hybrid') },
        'Create registration token',
      ),
    ),
    dl,
    out,
  );
};

pages.domains = async (root) => {
  const msg = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  const act = (fn) => async (ev) => {
    ev?.preventDefault?.();
    msg.replaceChildren();
    try {
      await fn();
      await load();
    } catch (err) {
      msg.replaceChildren(alertBox(err));
    }
  };
  const load = async () => {
    const ds = await api('/domains');
    list.replaceChildren(
      table(
        'Domains',
        ['Domain', 'Status', 'Sign-in', 'TXT record to publish', can('global') ? 'Actions' : ''],
        ds.map((d) => {
          const kind = h(
            'select',
            { 'aria-label': `Sign-in for ${d.name}` },
            h('option', { value: 'managed', selected: d.kind === 'managed' }, 'Managed (pass-through)'),
            h('option', { value: 'federated', selected: d.kind === 'federated' }, 'Federated'),
          );
          const url = h('input', {
            type: 'url',
            placeholder: 'https://idp.example.com/...',
            'aria-label': `Federation URL for ${d.name}`,
            value: d.federationUrl ?? '',
          });
          return h(
            'tr',
            {},
            h('td', {}, d.name),
            h('td', {}, d.verified ? 'Verified' : 'Unverified'),
            h('td', {}, d.kind === 'federated' ? `Federated → ${d.federationUrl}` : 'Managed'),
            h('td', { class: 'wrap' }, d.verified ? '—' : h('code', {}, d.txtRecord)),
            h(
              'td',
              {},
              can('global')
                ? h(
                    'div',
                    { class: 'row' },
                    d.verified
                      ? null
                      : h(
                          'button',
                          {
                            type: 'button',
                            class: 'secondary',
                            onclick: act(async () => {
                              await api(`/domains/${d.name}/verify`, { method: 'POST' });
                              say(`${d.name} verified.`);
                            }),
                          },
                          `Verify ${d.name}`,
                        ),
                    kind,
                    url,
                    h(
                      'button',
                      {
                        type: 'button',
                        class: 'secondary',
                        onclick: act(async () => {
                          await api(`/domains/${d.name}`, {
                            method: 'PATCH',
                            body:
                              kind.value === 'federated'
                                ? { kind: 'federated', federationUrl: url.value }
                                : { kind: 'managed' },
                          });
                          say(`${d.name} saved.`);
                        }),
                      },
                      'Save',
                    ),
                  )
                : '',
            ),
          );
        }),
      ),
    );
  };
  await load();
  const name = h('input', { type: 'text', required: true, autocomplete: 'off', placeholder: 'contoso.com' });
  root.append(
    can('global')
      ? h(
          'form',
          {
            class: 'row',
            onsubmit: act(async () => {
              const d = await api('/domains', { method: 'POST', body: { name: name.value } });
              msg.replaceChildren(
                h('p', { class: 'info' }, `Publish TXT "${d.txtRecord}" at ${d.name}, then verify it.`),
              );
              name.value = '';
            }),
          },
          field('new-domain', 'Add a domain', name),
          h('button', { type: 'submit' }, 'Add domain'),
        )
      : null,
    msg,
    list,
  );
};

pages.users = async (root) => {
  const msg = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  const search = h('input', { type: 'search', autocomplete: 'off' });
  const load = async () => {
    const page = await api(`/users?${new URLSearchParams({ search: search.value, limit: '100' })}`);
    list.replaceChildren(
      table(
        'Users',
        ['User principal name', 'Name', 'Source', 'Enabled', 'Roles', 'Lockout', 'Actions'],
        page.users.map((u) => {
          const actions = h('div', { class: 'row' });
          if (can('users')) {
            actions.append(
              h(
                'button',
                {
                  type: 'button',
                  class: 'secondary',
                  'aria-label': `Unlock ${u.upn}`,
                  onclick: async () => {
                    try {
                      await api(`/users/${u.id}/unlock`, { method: 'POST' });
                      say(`${u.upn} unlocked.`);
                      await load();
                    } catch (err) {
                      msg.replaceChildren(alertBox(err));
                    }
                  },
                },
                'Unlock',
              ),
            );
            if (u.source === 'cloud') {
              const pw = h('input', { type: 'password', autocomplete: 'new-password', minlength: '8' });
              actions.append(
                h(
                  'form',
                  {
                    class: 'row',
                    onsubmit: async (ev) => {
                      ev.preventDefault();
                      try {
                        await api(`/users/${u.id}/password`, {
                          method: 'POST',
                          body: { password: pw.value },
                        });
                        pw.value = '';
                        msg.replaceChildren(h('p', { class: 'info' }, `Password of ${u.upn} reset.`));
                      } catch (err) {
                        msg.replaceChildren(alertBox(err));
                      }
                    },
                  },
                  h('label', { class: 'visually-hidden', for: `pw-${u.id}` }, `New password for ${u.upn}`),
                  Object.assign(pw, { id: `pw-${u.id}` }),
                  h('button', { type: 'submit', class: 'secondary' }, 'Reset password'),
                ),
              );
            }
          }
          return h(
            'tr',
            {},
            h('td', {}, u.upn),
            h('td', {}, u.displayName ?? '—'),
            h('td', {}, u.source === 'cloud' ? 'Cloud-only' : 'Synced'),
            h('td', {}, u.enabled ? 'Yes' : 'No'),
            h('td', {}, u.roles.join(', ') || '—'),
            h(
              'td',
              { class: u.lockedUntil ? 'inactive' : '' },
              u.lockedUntil ? `Locked until ${when(u.lockedUntil)}` : 'Not locked',
            ),
            h('td', {}, actions),
          );
        }),
      ),
    );
  };
  root.append(
    h(
      'form',
      {
        class: 'row',
        role: 'search',
        onsubmit: (ev) => {
          ev.preventDefault();
          load().catch((err) => msg.replaceChildren(alertBox(err)));
        },
      },
      field('user-search', 'Search users', search),
      h('button', { type: 'submit' }, 'Search'),
    ),
    msg,
    list,
  );
  await load();
};

pages.signins = async (root) => {
  const agents = await api('/agents');
  const names = new Map(agents.map((a) => [a.id, a.machineName]));
  const upn = h('input', { type: 'text', autocomplete: 'off' });
  const result = h(
    'select',
    {},
    h('option', { value: '' }, 'Any'),
    h('option', { value: 'success' }, 'Success'),
    h('option', { value: 'failure' }, 'Failure'),
  );
  const outcome = h('input', { type: 'text', placeholder: 'e.g. invalid_credentials' });
  const agent = h(
    'select',
    {},
    h('option', { value: '' }, 'Any'),
    agents.map((a) => h('option', { value: a.id }, a.machineName)),
  );
  const from = h('input', { type: 'datetime-local' });
  const to = h('input', { type: 'datetime-local' });
  const list = h('div', { 'aria-live': 'polite' });
  const load = async () => {
    const q = new URLSearchParams({ limit: '200' });
    if (upn.value.trim()) q.set('upn', upn.value.trim());
    if (result.value) q.set('result', result.value);
    if (outcome.value.trim()) q.set('outcome', outcome.value.trim());
    if (agent.value) q.set('agentId', agent.value);
    if (from.value) q.set('from', String(new Date(from.value).getTime()));
    if (to.value) q.set('to', String(new Date(to.value).getTime()));
    const rows = await api(`/signins?${q}`);
    list.replaceChildren(
      table(
        'Sign-ins',
        [
          'Time',
          'User',
          'Result',
          'Code',
          'Method',
          'Agent',
          'DC server',
          'Directory code',
          'Agent ms',
          'DC ms',
          'Total ms',
          'Client IP',
          'Request ID',
        ],
        rows.map((r) =>
          h(
            'tr',
            {},
            h('td', {}, when(r.at)),
            h('td', {}, r.upn),
            h('td', { class: r.success ? 'active' : 'inactive' }, r.success ? 'Success' : 'Failure'),
            h('td', {}, r.outcome),
            h('td', {}, r.method),
            h('td', {}, r.agentId ? (names.get(r.agentId) ?? r.agentId) : '—'),
            h('td', {}, r.server ?? '—'),
            h('td', {}, r.directoryCode ?? '—'),
            h('td', {}, r.agentMs === null ? '—' : String(Math.round(r.agentMs))),
            h('td', {}, r.directoryMs === null ? '—' : String(Math.round(r.directoryMs))),
            h('td', {}, String(Math.round(r.totalMs))),
            h('td', {}, r.clientIp ?? '—'),
            h('td', {}, h('code', {}, r.requestId)),
          ),
        ),
      ),
    );
  };
  root.append(
    h(
      'form',
      {
        class: 'row',
        onsubmit: (ev) => {
          ev.preventDefault();
          load().catch((err) => list.replaceChildren(alertBox(err)));
        },
      },
      field('f-upn', 'User', upn),
      field('f-result', 'Result', result),
      field('f-outcome', 'Code', outcome),
      field('f-agent', 'Agent', agent),
      field('f-from', 'From', from),
      field('f-to', 'To', to),
      h('button', { type: 'submit' }, 'Apply filters'),
    ),
    list,
  );
  await load();
};

pages.lockout = async (root) => {
  const s = await api('/settings');
  // The form starts from what is applied: the settings, tightened to the directory's policy, so
  // saving it unchanged is never refused as looser than the directory.
  const e = s.effectiveLockout;
  const threshold = h('input', {
    type: 'number',
    min: '1',
    max: String(e.directoryBudget ?? 100),
    value: String(e.threshold),
    required: true,
  });
  const duration = h('input', {
    type: 'number',
    min: String(e.directoryBudget === null ? 1 : e.directoryWindowS),
    max: '86400',
    value: String(e.durationS),
    required: true,
  });
  const warnings = h('div', { 'aria-live': 'polite' });
  const showWarnings = (ws) =>
    warnings.replaceChildren(
      ...ws.map((w) => h('p', { class: 'alert', role: 'alert', 'data-code': w.code }, w.message)),
      ws.length ? '' : h('p', { class: 'info' }, 'The cloud locks out before the directory does.'),
    );
  showWarnings(s.lockoutWarnings);
  const d = s.directoryLockout;
  root.append(
    h(
      'p',
      {},
      "Smart lockout stops password spraying in the cloud, before anything reaches your directory. It must trip before the directory's own lockout: a lower threshold and at least as long a duration. A looser setting is refused, and when the directory tightens its policy smart lockout follows it.",
    ),
    h(
      'p',
      {},
      'Directory policy (reported by the agents): ',
      d
        ? `${d.threshold} failures, ${d.durationS ? `${d.durationS} s` : 'until unlocked'}`
        : 'not reported yet',
    ),
    h('p', {}, `Applied: ${e.threshold} failures, ${e.durationS} s.`),
    h(
      'form',
      {
        onsubmit: async (ev) => {
          ev.preventDefault();
          try {
            const r = await api('/settings', {
              method: 'PATCH',
              body: { lockoutThreshold: Number(threshold.value), lockoutDurationS: Number(duration.value) },
            });
            showWarnings(r.lockoutWarnings);
            say('Smart lockout saved.');
          } catch (err) {
            warnings.replaceChildren(alertBox(err));
          }
        },
      },
      field('lockout-threshold', 'Lockout threshold (failed sign-ins)', threshold),
      field('lockout-duration', 'Lockout duration (seconds)', duration),
      h('button', { type: 'submit', disabled: !can('hybrid') }, 'Save'),
    ),
    warnings,
  );
};

pages.apps = (root) => appsPage(root, { h, api, say, table, field, alertBox, can });

pages.audit = async (root) => {
  const rows = await api('/audit?limit=200');
  root.append(
    table(
      'Audit log',
      ['Time', 'Actor', 'Action', 'Target', 'Detail'],
      rows.map((r) =>
        h(
          'tr',
          {},
          h('td', {}, when(r.at)),
          h('td', {}, r.actor),
          h('td', {}, r.action),
          h('td', {}, r.target ?? '—'),
          h('td', { class: 'wrap' }, r.detail === null ? '—' : JSON.stringify(r.detail)),
        ),
      ),
    ),
  );
};

const TITLES = {
  overview: 'Overview',
  pta: 'Pass-through authentication',
  download: 'Download agent',
  domains: 'Domains',
  users: 'Users',
  apps: 'Applications',
  signins: 'Sign-in logs',
  lockout: 'Smart lockout',
  audit: 'Audit log',
};

const show = async (name) => {
  clearInterval(refreshTimer);
  const page = Object.hasOwn(pages, name) ? name : 'overview';
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${page}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[page]} · Gatehouse admin center`;
  const heading = h('h1', { tabindex: '-1' }, TITLES[page]);
  const root = h('div', { 'aria-busy': 'true' });
  main.replaceChildren(heading, root);
  try {
    await pages[page](root);
  } catch (err) {
    if (err.status !== 401) root.append(alertBox(err));
  }
  root.removeAttribute('aria-busy');
  return heading;
};

const start = async () => {
  document.getElementById('signout').addEventListener('click', () => {
    sessionStorage.removeItem(KEY);
    location.assign(
      `${issuer}/session/end?client_id=${CLIENT_ID}&post_logout_redirect_uri=${encodeURIComponent(`${location.origin}${base}/admin/`)}`,
    );
  });
  if (location.pathname.endsWith('/admin/callback')) {
    try {
      await finishSignIn();
    } catch (err) {
      history.replaceState(null, '', `${base}/admin/`);
      return renderSignIn(err.message);
    }
  }
  if (!token()) return renderSignIn();
  try {
    me = await api('/me');
  } catch (err) {
    if (err.status !== 401) renderSignIn(errorText(err));
    return;
  }
  document.getElementById('who').textContent = `${me.upn} (${me.roles.join(', ')})`;
  document.getElementById('signout').hidden = false;
  document.getElementById('nav').hidden = false;
  window.addEventListener('hashchange', () => show(location.hash.slice(1)).then((hd) => hd.focus()));
  await show(location.hash.slice(1) || 'overview');
};

start();
