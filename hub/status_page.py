"""``GET /``: the fleet status page for people.

A static page: the data comes from ``/v1/fleet`` with an operator token the person pastes in (kept in
the tab's sessionStorage only), so the page itself reveals nothing to someone without a token.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Harbour hub - fleet</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:4px 8px;text-align:left}.bad{color:#b00}</style></head>
<body><h1>Harbour hub: fleet status</h1>
<p>Operator token (from <code>harbour hub add-operator NAME --data DIR</code>):
<input id="token" type="password" size="50"> <button id="load">Show</button></p>
<p id="summary"></p><table id="fleet"></table><h2>Quarantine</h2><ul id="quarantine"></ul>
<script>
const el = (tag, text) => { const e = document.createElement(tag); e.textContent = text; return e; };
async function load() {
  const token = document.getElementById('token').value || sessionStorage.getItem('harbourToken') || '';
  sessionStorage.setItem('harbourToken', token);
  const answer = await fetch('/v1/fleet', {headers: {Authorization: 'Bearer ' + token}});
  const doc = await answer.json();
  const table = document.getElementById('fleet'); table.replaceChildren();
  const quarantine = document.getElementById('quarantine'); quarantine.replaceChildren();
  if (!answer.ok) { document.getElementById('summary').textContent = doc.error; return; }
  document.getElementById('summary').textContent =
    'merge lag ' + doc.merge_lag_seconds + ' s, generated ' + doc.generated_at;
  const head = document.createElement('tr');
  ['site', 'table', 'rows merged', 'pending', 'watermark', 'gaps', 'last contact']
    .forEach(h => head.appendChild(el('th', h)));
  table.appendChild(head);
  for (const site of doc.sites) {
    for (const [name, t] of Object.entries(site.tables)) {
      const row = document.createElement('tr');
      [site.site, name, t.rows_merged, t.segments_pending_merge, t.watermark,
       JSON.stringify(t.gaps), site.last_contact || '-'].forEach(v => row.appendChild(el('td', v)));
      table.appendChild(row);
    }
    for (const q of site.quarantined) {
      const item = el('li', site.site + '/' + q.table + '/' + q.seq + ': ' + q.reason);
      item.className = 'bad'; quarantine.appendChild(item);
    }
  }
}
document.getElementById('load').onclick = load;
if (sessionStorage.getItem('harbourToken')) load();
</script></body></html>
"""
