-- name: warehouse
-- The canonical warehouse. Money is DECIMAL; attribute columns (customer or transaction level)
-- are added by the ingest as VARCHAR columns once their names are validated.
-- Idempotent: run on every open. Columns added after a table was first released are added again
-- at the end with `add column if not exists`, so warehouses built by older versions are upgraded.

create sequence if not exists batch_ids start 1;

-- One row per line item (a priced decision: a policy-year, a loan) and source; the ingest keeps
-- (source, transaction_id) unique. customer_id, product_id and quantity always have a value, from the
-- source or, when it has none, its documented meaning (audits/staging.py).
create table if not exists transactions (
    transaction_id  varchar not null,
    source          varchar not null,
    timestamp       timestamp,           -- null: a snapshot source's row (no time; in every period)
    customer_id     varchar not null,
    product_id      varchar not null,
    quantity        decimal(18, 3) not null,
    list_price      decimal(18, 4),
    unit_price      decimal(18, 4),      -- null only when the source has none (audit.outcome names another column)
    category        varchar,
    channel         varchar,
    discount_amount decimal(18, 4),
    line_total      decimal(18, 4),
    discount_code   varchar,
    currency        varchar,
    batch_id        bigint not null      -- the batch that last wrote the row
);

create table if not exists customers (
    customer_id    varchar not null,
    customer_since date,
    batch_id       bigint not null
);

-- Every ingest batch, whatever its outcome. For a loaded batch
-- rows_read = rows_loaded + rows_replaced + rows_duplicate + rows_quarantined.
create table if not exists ingest_batches (
    batch_id         bigint not null,
    source           varchar not null,
    started_at       timestamp not null,
    finished_at      timestamp,
    status           varchar not null,   -- loaded | failed_quality | failed
    watermark_from   varchar,            -- postgres: the lower bound read (stored watermark minus lookback)
    watermark_to     varchar,            -- the highest watermark value among the accepted rows so far
    rows_read        bigint,
    rows_loaded      bigint,             -- new keys
    rows_replaced    bigint,             -- keys already loaded, with different values (corrections)
    rows_duplicate   bigint,             -- already loaded unchanged, or repeated verbatim in the batch
    rows_quarantined bigint,
    seconds          double,
    message          varchar
);

-- Rows that failed a row rule: kept with every reason and the values as read, never dropped.
create table if not exists quarantine (
    batch_id   bigint not null,
    source     varchar not null,
    source_row bigint not null,          -- 1-based row within its file (files) or within the read (postgres)
    reason     varchar not null,         -- '; '-separated, each 'column: what is wrong'
    raw        varchar not null          -- the row as read, JSON
);

-- The files each loaded batch read: a file whose path, size and modification time match a row
-- here, read under the same mapping and rules (fingerprint), is not read again (incremental file loads).
create table if not exists ingest_files (
    source      varchar not null,
    path        varchar not null,
    size_bytes  bigint not null,
    modified_ns bigint not null,
    batch_id    bigint not null,
    rows_read   bigint not null,
    fingerprint varchar                  -- of the source's mapping and the validation rules it was read with
);

create table if not exists expectation_results (
    batch_id        bigint not null,
    source          varchar not null,
    expectation     varchar not null,
    column_name     varchar,
    success         boolean not null,
    unexpected_count bigint,
    element_count   bigint
);

create table if not exists audit_runs (
    run_id        varchar not null,
    scope         varchar not null,
    period_start  date not null,
    period_end    date not null,
    finished_at   timestamp not null,
    findings_json varchar not null,
    index_json    varchar  -- what the index page shows of the run (reports/render.py: index_entry)
);

-- Upgrades of warehouses created before these columns existed (no-ops on new ones).
alter table ingest_batches add column if not exists watermark_column varchar;
alter table ingest_batches add column if not exists files_read bigint;
alter table audit_runs add column if not exists index_json varchar;
alter table ingest_batches add column if not exists files_skipped bigint;
alter table quarantine add column if not exists source_file varchar;
alter table ingest_files add column if not exists fingerprint varchar;
-- postgres: where the source reads (server, database, table), to recognise it renamed (audits/renames.py)
alter table ingest_batches add column if not exists origin varchar;
alter table transactions alter column timestamp drop not null;
alter table transactions alter column unit_price drop not null;
