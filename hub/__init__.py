"""The hub: authenticated resumable ingest (tus), exactly-once ledger, merger, fleet query and status."""
