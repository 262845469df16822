-- name: price_gap
-- Detects groups paying more than their reference within the same cell (product x day by default,
-- audit.cell) and controls. Measurement: the outcome (the unit price paid by default, audit.outcome):
-- its log on the ratio scale (lines without a positive outcome are left out), as is on the points scale.
-- Input: temp table `coded_lines` (audits/coding.py: one row per audited line, with its codes).
-- Output grain: one row per measured line: its codes and y, estimated by audits/contrasts.py
-- (exp(beta) is the ratio, or beta the difference in points; also the regression-adjusted model).
-- loyalty_penalty measures its lines with this file too (audits/catalogue.py: measured_as): it compares
-- existing customers (tenure over audit.tenure_days, each tenure band, or renewals) with new business,
-- one dimension `tenure` tested against the reference `new`; lines of unknown tenure take no part.
with

lines as (
    select * from coded_lines
),

final as (
    select *, outcome_y as y
    from lines
    where outcome_y is not null
)

select * from final
