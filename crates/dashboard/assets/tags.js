// IdleHands dashboard: the Tags page. Lists the tags from GET /tag/list (those made here, with
// their budget and limits, then those only seen in calls), makes one with POST /tag/new and
// deletes one with POST /tag/delete. app.js calls IdleHandsTags.render(ctx) when it is shown.
'use strict';
window.IdleHandsTags = (function () {
  let ctx = null;
  let wired = false;

  function usd(v) {
    return '$' + Number(v).toFixed(Number(v) < 1 && Number(v) > 0 ? 4 : 2);
  }

  function limits(b) {
    if (!b) return 'none';
    const out = [];
    if (b.max_budget !== null && b.max_budget !== undefined) {
      out.push(usd(b.max_budget) + (b.budget_duration ? ' / ' + b.budget_duration : ' in all'));
    }
    if (b.rpm_limit) out.push(b.rpm_limit + ' rpm');
    if (b.tpm_limit) out.push(b.tpm_limit + ' tpm');
    if (b.max_parallel_requests) out.push(b.max_parallel_requests + ' at once');
    return out.join(' · ') || 'none';
  }

  function row(t) {
    const { h } = ctx;
    // A tag only seen in calls has no created_by field and no models list.
    const stored = Array.isArray(t.models);
    const models = stored && t.models.length ? t.models.join(', ') : '–';
    return h('tr', { dataset: { name: t.name } },
      h('td', null, h('div', { class: 'key-alias' }, t.name), t.description && h('div', { class: 'sub' }, t.description)),
      h('td', { class: 'limits' }, limits(t.litellm_budget_table)),
      h('td', null, models),
      h('td', null, h('span', { class: 'badge' + (stored ? ' ok' : '') }, stored ? 'API' : 'calls')),
      h('td', null, h('div', { class: 'actions' }, stored
        ? h('button', {
          type: 'button', class: 'ghost small-btn', 'data-action': 'delete', 'aria-label': 'Delete ' + t.name,
          onclick: () => confirmDelete(t),
        }, 'Delete')
        : h('span', { class: 'sub', title: 'Passed in calls; create a tag of this name to give it a budget' }, 'seen'))));
  }

  async function refresh() {
    const list = await ctx.api('/tag/list');
    const tags = Array.isArray(list) ? list : [];
    const q = ctx.$('tag-search').value.trim().toLowerCase();
    const shown = tags.filter((t) => !q || String(t.name).toLowerCase().includes(q)
      || String(t.description || '').toLowerCase().includes(q));
    ctx.$('tags-body').replaceChildren(...shown.map(row));
    ctx.$('tags-empty').hidden = shown.length > 0;
  }

  function confirmDelete(t) {
    const d = ctx.$('tag-confirm-dialog');
    ctx.$('tag-confirm-text').textContent =
      `Delete the tag “${t.name}”? Its budget stops holding the calls that carry it, at once on every instance.`;
    d.returnValue = '';
    d.onclose = async () => {
      if (d.returnValue !== 'confirm') return;
      try {
        await ctx.api('/tag/delete', { body: { name: t.name } });
        ctx.toast('Deleted ' + t.name);
        await refresh();
      } catch (e) { ctx.fail(e); }
    };
    d.showModal();
  }

  function openAdd() {
    const f = ctx.$('tag-form');
    f.reset();
    ctx.$('tag-error').hidden = true;
    ctx.$('tag-dialog').showModal();
  }

  async function submitAdd(ev) {
    ev.preventDefault();
    const f = ev.target;
    if (!f.reportValidity()) return;
    const v = (n) => f.elements[n].value.trim();
    const body = { name: v('name') };
    if (v('description')) body.description = v('description');
    if (v('max_budget')) body.max_budget = Number(v('max_budget'));
    if (v('budget_duration')) body.budget_duration = v('budget_duration');
    if (v('rpm_limit')) body.rpm_limit = Number(v('rpm_limit'));
    if (v('tpm_limit')) body.tpm_limit = Number(v('tpm_limit'));
    const submit = f.querySelector('[type=submit]');
    submit.disabled = true;
    try {
      await ctx.api('/tag/new', { body });
      f.reset();
      ctx.$('tag-dialog').close();
      ctx.toast('Created ' + body.name);
      await refresh();
    } catch (e) {
      if (e.status === 401) return;
      ctx.$('tag-error').textContent = e.message;
      ctx.$('tag-error').hidden = false;
    } finally {
      submit.disabled = false;
    }
  }

  function wire() {
    if (wired) return;
    wired = true;
    ctx.$('new-tag').addEventListener('click', openAdd);
    ctx.$('tag-form').addEventListener('submit', submitAdd);
    ctx.$('tag-search').addEventListener('input', () => refresh().catch(ctx.fail));
  }

  return {
    async render(c) {
      ctx = c;
      wire();
      await refresh();
    },
  };
})();
