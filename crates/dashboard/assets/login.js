// Sign-in page: exchanges the master key for an HttpOnly session cookie via POST /ui/login,
// so the key never travels in a URL or sits in script-reachable storage.
'use strict';
(function () {
  const form = document.getElementById('login-form');
  const error = document.getElementById('login-error');
  const input = document.getElementById('password');

  // Already signed in: skip the form.
  fetch('/ui/session', { credentials: 'same-origin', cache: 'no-store' })
    .then((r) => { if (r.ok) location.replace('/ui/'); })
    .catch(() => {});

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const res = await fetch('/ui/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ password: input.value }),
      });
      if (res.ok) {
        input.value = '';
        location.replace('/ui/');
        return;
      }
      let message = res.status === 401 ? 'That key was not accepted.' : 'Sign-in failed (HTTP ' + res.status + ').';
      try {
        const body = await res.json();
        const m = body && body.error && (body.error.message || body.error);
        if (typeof m === 'string' && res.status !== 401) message = m;
      } catch (_) { /* non-JSON error body */ }
      error.textContent = message;
      error.hidden = false;
      input.select();
    } catch (_) {
      error.textContent = 'Cannot reach the gateway.';
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
})();
