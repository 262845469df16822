"""PriceParity's core: config, warehouse, ingest, validation, checks, statistics, findings."""

__version__ = "0.1.0"
