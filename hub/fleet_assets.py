"""The fleet page's stylesheet and script, served by the hub itself (``/ui/fleet.css``, ``/ui/fleet.js``).

They are Python strings rather than files so that they ship inside the package with no package-data
set-up, and so that the page's Content-Security-Policy can forbid every inline script and style.

The script does two things: sorts the fleet table when a column heading is pressed (and keeps that
order across refreshes), and refreshes the page's three parts from ``/ui/fleet.json`` every
``REFRESH_SECONDS`` without reloading, keeping open ship details open. Without the script the page
still works: it is rendered complete by the hub, and reloading it shows fresh numbers.
"""

REFRESH_SECONDS = 5

CSS = """
body{font-family:system-ui,sans-serif;margin:0 1.5em 2em;color:#111;background:#fff}
header{display:flex;justify-content:space-between;align-items:center}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:#eee}
th button{font:inherit;font-weight:bold;background:none;border:0;padding:0;cursor:pointer;text-decoration:underline}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{text-align:left;font-style:italic;padding:.3em 0}
.why{font-size:.9em}
tr.state-silent,details.state-silent>summary{background:#fde2e1;border-left:6px solid #a40000}
tr.state-attention,details.state-attention>summary{background:#fff1cc;border-left:6px dashed #8a5a00}
tr.state-behind,details.state-behind>summary{background:#e8eefc;border-left:6px dotted #1d3f8f}
dl.totals{display:flex;flex-wrap:wrap;gap:.5em 2em;margin:0}
dl.totals dt{font-size:.85em}
dl.totals dd{margin:0;font-size:1.3em;font-weight:bold}
details{margin:.6em 0;border:1px solid #999;padding:.3em .6em}
summary{cursor:pointer;padding:.3em}
.charts{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}
figcaption{font-size:.9em;text-align:center}
svg.chart .frame{fill:#fafafa;stroke:#999}
svg.chart .line{stroke:#1d3f8f;stroke-width:2}
svg.chart .dot{fill:#1d3f8f}
svg.chart text{font-size:11px;fill:#333}
.error{color:#a40000;font-weight:bold}
.error::before{content:"\\26A0  "}
.login form{display:flex;flex-direction:column;max-width:28em;gap:.4em}
.login input{font:inherit;padding:.3em}
.login button{align-self:flex-start;font:inherit;padding:.3em 1em}
"""

SCRIPT = """
(function () {
  'use strict';
  const table = document.getElementById('fleet');
  const body = document.getElementById('fleet-rows');
  let sortColumn = -1, sortDirection = 1;

  function value(row, column) {
    const cell = row.children[column];
    return cell ? cell.getAttribute('data-sort') || '' : '';
  }

  function applySort() {
    if (sortColumn < 0) return;
    const numeric = table.tHead.rows[0].cells[sortColumn].getAttribute('data-sort-type') === 'number';
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = value(a, sortColumn), y = value(b, sortColumn);
      const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return order * sortDirection;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  Array.from(table.tHead.rows[0].cells).forEach(function (th, column) {
    th.querySelector('button').addEventListener('click', function () {
      sortDirection = sortColumn === column ? -sortDirection : 1;
      sortColumn = column;
      Array.from(table.tHead.rows[0].cells).forEach(function (other) {
        other.setAttribute('aria-sort', 'none');
      });
      th.setAttribute('aria-sort', sortDirection > 0 ? 'ascending' : 'descending');
      applySort();
    });
  });

  function openTarget() {
    const target = location.hash && document.getElementById(location.hash.slice(1));
    if (target && target.tagName === 'DETAILS') target.open = true;
  }
  window.addEventListener('hashchange', openTarget);
  openTarget();

  async function refresh() {
    const status = document.getElementById('refresh-error');
    try {
      const answer = await fetch('/ui/fleet.json', {credentials: 'same-origin', cache: 'no-store'});
      if (answer.status === 401) { location.reload(); return; }
      if (!answer.ok) throw new Error('HTTP ' + answer.status);
      const doc = await answer.json();
      const open = Array.from(document.querySelectorAll('#details details[open]')).map(function (d) { return d.id; });
      document.getElementById('totals').innerHTML = doc.html.totals;
      body.innerHTML = doc.html.rows;
      document.getElementById('details').innerHTML = doc.html.details;
      open.forEach(function (id) { const d = document.getElementById(id); if (d) d.open = true; });
      applySort();
      document.getElementById('updated').textContent = doc.generated_at;
      status.textContent = '';
    } catch (error) {
      status.textContent = 'Refresh failed (' + error.message + '); retrying.';
    }
  }
  setInterval(refresh, REFRESH_MS);
})();
""".replace("REFRESH_MS", str(REFRESH_SECONDS * 1000))
