// IdleHands dashboard: the Models page. Lists every deployment from GET /model/info (config.yaml
// and those added over the API), adds one with POST /model/new and deletes one with
// POST /model/delete. app.js calls IdleHandsModels.render(ctx) when the page is shown.
'use strict';
window.IdleHandsModels = (function () {
  let ctx = null;
  let wired = false;

  function perMillion(v) {
    if (v === null || v === undefined || v === '') return '–';
    const n = Number(v) * 1e6;
    return '$' + (n < 0.01 && n > 0 ? n.toFixed(4) : n.toFixed(2));
  }

  function row(m) {
    const { h } = ctx;
    const info = m.model_info || {};
    const params = m.litellm_params || {};
    const stored = info.db_model === true;
    return h('tr', { dataset: { id: info.id || '', name: m.model_name || '' } },
      h('td', null, h('div', { class: 'key-alias' }, m.model_name || '–'), h('div', { class: 'sub mono' }, info.id || '')),
      h('td', null, h('div', null, params.model || '–'), params.api_base && h('div', { class: 'sub' }, params.api_base)),
      h('td', { class: 'limits' }, perMillion(info.input_cost_per_token) + ' / ' + perMillion(info.output_cost_per_token)),
      h('td', { class: 'limits' }, [params.rpm ? params.rpm + ' rpm' : null, params.tpm ? params.tpm + ' tpm' : null].filter(Boolean).join(' · ') || 'none'),
      h('td', null, h('span', { class: 'badge' + (stored ? ' ok' : '') }, stored ? 'API' : 'config.yaml')),
      h('td', null, h('div', { class: 'actions' }, stored
        ? h('button', {
          type: 'button', class: 'ghost small-btn', 'data-action': 'delete', 'aria-label': 'Delete ' + m.model_name,
          onclick: () => confirmDelete(m),
        }, 'Delete')
        : h('span', { class: 'sub', title: 'Edit config.yaml to change this model' }, 'fixed'))));
  }

  async function refresh() {
    const r = await ctx.api('/model/info');
    const data = (r && Array.isArray(r.data)) ? r.data : [];
    const q = ctx.$('model-search').value.trim().toLowerCase();
    const shown = data.filter((m) => !q || String(m.model_name).toLowerCase().includes(q)
      || String((m.litellm_params || {}).model || '').toLowerCase().includes(q));
    ctx.$('models-body').replaceChildren(...shown.map(row));
    ctx.$('models-empty').hidden = shown.length > 0;
  }

  function confirmDelete(m) {
    const d = ctx.$('model-confirm-dialog');
    ctx.$('model-confirm-text').textContent =
      `Delete the deployment “${m.model_name}” (${(m.litellm_params || {}).model})? Calls to it stop at once on every instance.`;
    d.returnValue = '';
    d.onclose = async () => {
      if (d.returnValue !== 'confirm') return;
      try {
        await ctx.api('/model/delete', { body: { id: m.model_info.id } });
        ctx.toast('Deleted ' + m.model_name);
        await refresh();
      } catch (e) { ctx.fail(e); }
    };
    d.showModal();
  }

  function openAdd() {
    const f = ctx.$('model-form');
    f.reset();
    ctx.$('model-error').hidden = true;
    ctx.$('model-dialog').showModal();
  }

  async function submitAdd(ev) {
    ev.preventDefault();
    const f = ev.target;
    if (!f.reportValidity()) return;
    const v = (n) => f.elements[n].value.trim();
    const params = { model: v('model') };
    if (v('api_base')) params.api_base = v('api_base');
    if (v('api_key')) params.api_key = v('api_key');
    if (v('rpm')) params.rpm = Number(v('rpm'));
    if (v('tpm')) params.tpm = Number(v('tpm'));
    if (v('input_cost')) params.input_cost_per_token = Number(v('input_cost')) / 1e6;
    if (v('output_cost')) params.output_cost_per_token = Number(v('output_cost')) / 1e6;
    const body = { model_name: v('model_name'), litellm_params: params };
    const submit = f.querySelector('[type=submit]');
    submit.disabled = true;
    try {
      await ctx.api('/model/new', { body });
      // The key typed into the form is not kept anywhere on the page.
      f.reset();
      ctx.$('model-dialog').close();
      ctx.toast('Added ' + body.model_name);
      await refresh();
    } catch (e) {
      if (e.status === 401) return;
      ctx.$('model-error').textContent = e.message;
      ctx.$('model-error').hidden = false;
    } finally {
      submit.disabled = false;
    }
  }

  function wire() {
    if (wired) return;
    wired = true;
    ctx.$('new-model').addEventListener('click', openAdd);
    ctx.$('model-form').addEventListener('submit', submitAdd);
    ctx.$('model-search').addEventListener('input', () => refresh().catch(ctx.fail));
  }

  return {
    async render(c) {
      ctx = c;
      wire();
      await refresh();
    },
  };
})();
