-- judge_agreement: how far judges agree on the same answer, one row per run: Krippendorff's alpha,
-- interval metric, over the judge x answer matrix of valid weighted scores.
-- Input: stg_judgments. Grain: (run_id), every run with a judgment row.
-- Units are answers (answer_key); a unit's values are the valid scores its judges gave. Units with
-- fewer than 2 values can't be paired and are left out; n = values in the remaining units.
-- alpha = 1 - D_o / D_e, with squared differences as the distance:
--   D_o = (1/n) sum_u sum_{i != j in u} (v_i - v_j)^2 / (m_u - 1)   (m_u = values in unit u)
--   D_e = (1 / (n (n - 1))) sum_{c != k} (v_c - v_k)^2              (all pairs of the n values)
-- which is, computed here from sums of squares about means,
--   alpha = 1 - (n - 1) * sum_u [m_u / (m_u - 1) * SS_u] / (n * SS)
--   SS_u = sum over unit u of (v - unit mean)^2, SS = sum over all n values of (v - grand mean)^2.
-- 1 = judges agree exactly, 0 = no better than scores shuffled across answers, < 0 = worse.
-- Null when fewer than 2 pairable values or SS = 0 (every value the same: no variation to agree on).
-- units, pairable_values, judges: what it was computed over.
with valid as not materialized (  -- inlined, not materialised: a filter on run_id reaches the files
    select * from stg_judgments where valid
),

units as not materialized (
    select
        run_id,
        answer_key,
        count(*) as m,
        var_pop(score) * count(*) as ss
    from valid
    group by run_id, answer_key
    having count(*) >= 2
),

pairable as (
    select v.*
    from valid as v
    semi join units as u using (run_id, answer_key)
),

totals as (
    select
        run_id,
        count(*) as n,
        var_pop(score) * count(*) as ss,
        count(distinct judge) as judges
    from pairable
    group by run_id
),

observed as (
    select
        run_id,
        count(*) as units,
        sum(m / (m - 1) * ss) as within
    from units
    group by run_id
),

final as (
    select
        r.run_id,
        1 - (t.n - 1) * o.within / nullif(t.n * t.ss, 0) as alpha,
        coalesce(o.units, 0) as units,
        coalesce(t.n, 0) as pairable_values,
        coalesce(t.judges, 0) as judges
    from (select distinct run_id from stg_judgments) as r
    left join totals as t using (run_id)
    left join observed as o using (run_id)
)

select * from final order by run_id
