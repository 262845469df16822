-- name: trend
-- Is the gap monotone across an ordered attribute's bands? Within each cell, the measurement y is
-- regressed on the band's rank (its code: codes of an ordered attribute follow its bands), the cell
-- means absorbed, residuals scaled for the cell means' leverage (as the contrasts are), and the slope's
-- sandwich summed over customers. Input: temp relation `measurements`. Output grain: one row: the slope
-- per band, its bread (sum of squared centred ranks), the customers' summed squared scores, the
-- customers that count (those with a line in a cell holding more than one band) and the bands compared.
-- identifiers: code, cell
with

lines as (
    select ci, {{ cell }} as cell, {{ code }}::double as x, y
    from measurements
    where {{ code }} >= 0 and y is not null
),

cells as (
    select cell, count(*) as n, avg(x) as x_bar, avg(y) as y_bar
    from lines
    group by cell
    having count(*) > 1 and min(x) < max(x)
),

centred as (
    select l.ci, l.x, l.x - c.x_bar as u, l.y - c.y_bar as e, sqrt(c.n / (c.n - 1.0)) as k
    from lines as l
    join cells as c using (cell)
),

fit as (
    select sum(u * e) / nullif(sum(u * u), 0) as beta, sum(u * u) as bread from centred
),

scores as (
    select ci, sum(k * u * (e - f.beta * u)) as score
    from centred
    cross join fit as f
    group by ci
),

final as (
    select f.beta, f.bread, (select sum(score * score) from scores) as meat,
           (select count(*) from scores) as customers, (select count(distinct x) from centred) as bands
    from fit as f
)

select * from final
