-- name: warehouse
-- The canonical warehouse. Money is DECIMAL; attribute columns (customer or transaction level)
-- are added by the ingest as VARCHAR columns once their names are validated.

create sequence if not exists batch_ids start 1;

create table if not exists transactions (
    transaction_id  varchar not null,
    source          varchar not null,
    timestamp       timestamp not null,
    customer_id     varchar not null,
    product_id      varchar not null,
    quantity        decimal(18, 3) not null,
    list_price      decimal(18, 4),
    unit_price      decimal(18, 4) not null,
    category        varchar,
    channel         varchar,
    discount_amount decimal(18, 4),
    line_total      decimal(18, 4),
    discount_code   varchar,
    currency        varchar,
    batch_id        bigint not null
);

create table if not exists customers (
    customer_id    varchar not null,
    customer_since date,
    batch_id       bigint not null
);

create table if not exists ingest_batches (
    batch_id         bigint not null,
    source           varchar not null,
    started_at       timestamp not null,
    finished_at      timestamp,
    status           varchar not null,   -- loaded | failed_quality | failed
    watermark_from   varchar,
    watermark_to     varchar,
    rows_read        bigint,
    rows_loaded      bigint,
    rows_replaced    bigint,
    rows_duplicate   bigint,
    rows_quarantined bigint,
    seconds          double,
    message          varchar
);

create table if not exists quarantine (
    batch_id   bigint not null,
    source     varchar not null,
    source_row bigint not null,
    reason     varchar not null,
    raw        varchar not null          -- the row as read, JSON
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
    findings_json varchar not null
);
