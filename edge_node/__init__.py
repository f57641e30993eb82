"""The edge node: a ship's durable local ingest, segments, ledger, quota, local query and sync agent."""
