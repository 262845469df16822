"""Shared pieces of the ingest tests: warehouse snapshots and the killed-load harness."""
