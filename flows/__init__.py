"""Prefect flows and the CLI: parameters in, stages called in order, retries, artifacts."""
