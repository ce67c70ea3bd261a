// Applications page of the admin center: app registrations (OIDC clients) through the admin API's
// /apps routes. A secret is shown once, in the answer that made it, and never kept in the page.
// Built with the shell's helpers (app.js passes them), so no data becomes markup here either.
const GRANTS = [
  ['authorization_code', 'Sign-in (authorization code)'],
  ['refresh_token', 'Refresh tokens'],
  ['client_credentials', 'Client credentials (the app as itself)'],
  ['password', 'Password grant (legacy)'],
];
const ROLES = [
  ['global_admin', 'Global Administrator'],
  ['hybrid_identity_admin', 'Hybrid Identity Administrator'],
  ['user_admin', 'User Administrator'],
  ['reader', 'Reader'],
];
const lines = (text) =>
  text
    .split(/\s+/)
    .map((s) => s.trim())
    .filter(Boolean);

export const appsPage = async (root, ui) => {
  const { h, api, say, table, field, alertBox, can } = ui;
  const msg = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  const editor = h('div');

  const secretBox = (app, secret) =>
    h(
      'div',
      { class: 'info', role: 'status', 'data-secret': '' },
      h('p', {}, `Client secret of ${app.name}, shown only now: store it in the app's configuration.`),
      h('p', {}, h('code', { 'aria-label': 'Client secret' }, secret)),
      h('p', {}, `Client ID: `, h('code', {}, app.clientId)),
    );

  const checks = (legend, name, options, chosen) =>
    h(
      'fieldset',
      {},
      h('legend', {}, legend),
      options.map(([value, label]) =>
        h(
          'label',
          { class: 'check' },
          h('input', { type: 'checkbox', name, value, checked: chosen.includes(value) }),
          ` ${label}`,
        ),
      ),
    );
  const picked = (form, name) =>
    [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);

  /** The create and edit form: the same fields, a different request. */
  const appForm = (app) => {
    const id = app ? `app-${app.clientId}` : 'app-new';
    const name = h('input', { type: 'text', required: true, autocomplete: 'off', value: app?.name ?? '' });
    const redirects = h('textarea', { rows: '2' });
    redirects.value = (app?.redirectUris ?? []).join('\n');
    const logouts = h('textarea', { rows: '2' });
    logouts.value = (app?.postLogoutRedirectUris ?? []).join('\n');
    const kind = h(
      'select',
      {},
      h(
        'option',
        { value: 'confidential', selected: app ? !app.public : true },
        'Confidential (has a secret)',
      ),
      h('option', { value: 'public', selected: app?.public }, 'Public (single-page or native app)'),
    );
    // ES256 unless the relying party can only check RSA signatures.
    const alg = h(
      'select',
      {},
      h('option', { value: 'ES256', selected: (app?.idTokenAlg ?? 'ES256') === 'ES256' }, 'ES256 (default)'),
      h('option', { value: 'RS256', selected: app?.idTokenAlg === 'RS256' }, 'RS256 (older libraries)'),
    );
    const form = h(
      'form',
      {
        class: 'stack',
        'aria-label': app ? `Edit ${app.name}` : 'Register an application',
        onsubmit: async (ev) => {
          ev.preventDefault();
          const body = {
            name: name.value,
            redirectUris: lines(redirects.value),
            postLogoutRedirectUris: lines(logouts.value),
            public: kind.value === 'public',
            grantTypes: picked(form, `${id}-grant`),
            firstParty: !form.querySelector(`input[name="${id}-third"]`).checked,
            adminRoles: picked(form, `${id}-role`),
            idTokenAlg: alg.value,
          };
          try {
            const r = app
              ? await api(`/apps/${app.clientId}`, { method: 'PATCH', body })
              : await api('/apps', { method: 'POST', body });
            editor.replaceChildren();
            await load();
            msg.replaceChildren(
              r.clientSecret ? secretBox(r, r.clientSecret) : h('p', { class: 'info' }, `${r.name} saved.`),
            );
            say(`${r.name} saved.`);
          } catch (err) {
            msg.replaceChildren(alertBox(err));
          }
        },
      },
      h('h2', {}, app ? `Edit ${app.name}` : 'Register an application'),
      field(`${id}-name`, 'Name', name),
      field(`${id}-kind`, 'Kind', kind),
      field(`${id}-redirects`, 'Redirect URIs (one per line)', redirects),
      field(`${id}-logouts`, 'Post-logout redirect URIs (one per line)', logouts),
      field(`${id}-alg`, 'ID token signing algorithm', alg),
      checks(
        'Allowed grants',
        `${id}-grant`,
        GRANTS,
        app?.grantTypes ?? ['authorization_code', 'refresh_token'],
      ),
      h(
        'label',
        { class: 'check' },
        h('input', { type: 'checkbox', name: `${id}-third`, checked: app ? !app.firstParty : false }),
        ' Third-party app: users consent to what it asks',
      ),
      checks(
        'Admin roles (service principal: needs client credentials)',
        `${id}-role`,
        ROLES,
        app?.adminRoles ?? [],
      ),
      h(
        'div',
        { class: 'row' },
        h('button', { type: 'submit' }, app ? 'Save' : 'Register'),
        h(
          'button',
          { type: 'button', class: 'secondary', onclick: () => editor.replaceChildren() },
          'Cancel',
        ),
      ),
    );
    return form;
  };

  const act = (fn) => async () => {
    try {
      await fn();
    } catch (err) {
      msg.replaceChildren(alertBox(err));
    }
  };

  const actions = (app) => {
    if (!can('global')) return '—';
    const confirmDelete = h(
      'button',
      {
        type: 'button',
        hidden: true,
        onclick: act(async () => {
          await api(`/apps/${app.clientId}`, { method: 'DELETE' });
          msg.replaceChildren(h('p', { class: 'info' }, `${app.name} deleted.`));
          say(`${app.name} deleted.`);
          await load();
        }),
      },
      `Yes, delete ${app.name}`,
    );
    return h(
      'div',
      { class: 'row' },
      h(
        'button',
        { type: 'button', class: 'secondary', onclick: () => editor.replaceChildren(appForm(app)) },
        `Edit ${app.name}`,
      ),
      app.public
        ? null
        : h(
            'button',
            {
              type: 'button',
              class: 'secondary',
              onclick: act(async () => {
                const r = await api(`/apps/${app.clientId}/secret`, { method: 'POST' });
                msg.replaceChildren(secretBox(app, r.clientSecret));
                say(`New secret for ${app.name}.`);
              }),
            },
            `New secret for ${app.name}`,
          ),
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: () => {
            confirmDelete.hidden = false;
            confirmDelete.focus();
          },
        },
        `Delete ${app.name}`,
      ),
      confirmDelete,
    );
  };

  const load = async () => {
    const apps = await api('/apps');
    list.replaceChildren(
      table(
        'Applications',
        [
          'Name',
          'Client ID',
          'Kind',
          'Grants',
          'Redirect URIs',
          'Post-logout URIs',
          'Admin roles',
          'ID token',
          'Actions',
        ],
        apps.map((a) =>
          h(
            'tr',
            { 'data-app': a.clientId },
            h('td', {}, a.name),
            h('td', {}, h('code', {}, a.clientId)),
            h('td', {}, `${a.public ? 'Public' : 'Confidential'}${a.firstParty ? '' : ', third-party'}`),
            h('td', { class: 'wrap' }, a.grantTypes.join(', ')),
            h('td', { class: 'wrap' }, a.redirectUris.join(' ') || '—'),
            h('td', { class: 'wrap' }, a.postLogoutRedirectUris.join(' ') || '—'),
            h('td', {}, a.adminRoles.join(', ') || '—'),
            h('td', {}, a.idTokenAlg),
            h('td', {}, actions(a)),
          ),
        ),
      ),
    );
  };

  root.append(
    h(
      'p',
      {},
      'Applications sign users in through this tenant (OpenID Connect). An app with admin roles and the client credentials grant is a service principal: scripts and CI call the admin API with its token, and the audit log names it.',
    ),
    can('global')
      ? h(
          'button',
          { type: 'button', onclick: () => editor.replaceChildren(appForm(null)) },
          'Register an application',
        )
      : null,
    msg,
    editor,
    list,
  );
  await load();
};
