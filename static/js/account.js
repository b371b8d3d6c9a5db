// The account page's picture: the chosen image goes to PUT /api/v1/me/avatar
// (the server keeps a small copy without its metadata), then the page reloads.

const input = document.getElementById('avatar-input');
const error = document.querySelector('[data-testid="avatar-error"]');

input?.addEventListener('change', async () => {
  const file = input.files?.[0];
  if (!file) return;
  error.hidden = true;
  const res = await fetch('/api/v1/me/avatar', {
    method: 'PUT',
    credentials: 'same-origin',
    headers: { Accept: 'application/json' },
    body: file,
  }).catch(() => null);
  if (res?.ok) {
    window.location.reload();
    return;
  }
  const body = res ? await res.json().catch(() => ({})) : {};
  error.textContent = body?.error?.message ?? 'The picture could not be uploaded; try again.';
  error.hidden = false;
  input.value = '';
});
