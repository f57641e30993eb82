// Uploads one file with tus-js-client and its DEFAULT options (one PATCH for the whole file, the client's own
// retries); only what any caller must give is set: the endpoint, the bearer token and the Harbour manifest as
// metadata. Used by tests/hub/test_tus_clients.py.
//   node upload.mjs ENDPOINT FILE TOKEN METADATA_JSON
// Prints one JSON line, {"ok": true, "url": ...} or {"ok": false, "error": ...}, and exits 0 or 1.
import fs from 'node:fs'
import * as tus from 'tus-js-client'

const [endpoint, file, token, metadataJson] = process.argv.slice(2)
const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  headers: { Authorization: `Bearer ${token}` },
  metadata: JSON.parse(metadataJson),
  onSuccess () {
    console.log(JSON.stringify({ ok: true, url: upload.url }))
  },
  onError (error) {
    console.log(JSON.stringify({ ok: false, error: String(error) }))
    process.exitCode = 1
  },
})
upload.start()
