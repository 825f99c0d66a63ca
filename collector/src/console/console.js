// edgeprobe NOC console: live incident rows over server-sent events, and acknowledging.
(() => {
  const rows = document.querySelector('#incidents tbody');
  if (rows && window.EventSource) {
    const events = new EventSource('/console/events');
    events.addEventListener('incidents', async () => {
      const r = await fetch('/console/incidents', { credentials: 'same-origin' });
      if (!r.ok) return;
      rows.innerHTML = await r.text();
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    });
  }
  document.addEventListener('click', async (e) => {
    const button = e.target.closest('button[data-ack]');
    if (!button) return;
    button.disabled = true;
    const message = document.getElementById('message');
    const r = await fetch(`/api/v1/incidents/${button.dataset.ack}/ack`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
      credentials: 'same-origin',
    });
    if (r.ok) {
      const incident = await r.json();
      const done = document.createElement('span');
      done.className = 'acked';
      done.textContent = `acked by ${incident.acked_by}`;
      button.replaceWith(done);
      message.textContent = '';
    } else {
      button.disabled = false;
      message.textContent = r.status === 403 ? 'Read-only users cannot acknowledge.' : `Acknowledging failed (${r.status}).`;
    }
  });
})();
