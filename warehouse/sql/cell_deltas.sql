-- cell_deltas: one run's (model, eval) cells against another's, for every ordered pair of runs
-- (query with where run_a = ... and run_b = ...).
-- Input: run_pairs, coverage. Grain: (run_a, run_b, model, eval_id), over the cells of either run.
-- status_a / status_b: coverage.cell_status in each run, 'missing' when the run has no such cell.
-- score_a / score_b: eval_score in each run. score_delta = score_b - score_a, rounded to 2
--   decimals (both have 2: the rounding only drops float noise).
-- changed: the status or the eval score differs between the two runs.
with cells as (
    select * from coverage
),

keys as (
    select distinct p.run_a, p.run_b, c.model, c.eval_id
    from run_pairs as p
    inner join cells as c on c.run_id in (p.run_a, p.run_b)
),

final as (
    select
        k.run_a,
        k.run_b,
        k.model,
        k.eval_id,
        coalesce(a.cell_status, 'missing') as status_a,
        coalesce(b.cell_status, 'missing') as status_b,
        a.eval_score as score_a,
        b.eval_score as score_b,
        round(b.eval_score - a.eval_score, 2) as score_delta,
        coalesce(a.cell_status, 'missing') <> coalesce(b.cell_status, 'missing')
            or a.eval_score is distinct from b.eval_score as changed
    from keys as k
    left join cells as a on a.run_id = k.run_a and a.model = k.model and a.eval_id = k.eval_id
    left join cells as b on b.run_id = k.run_b and b.model = k.model and b.eval_id = k.eval_id
)

select * from final order by run_a, run_b, model, eval_id
