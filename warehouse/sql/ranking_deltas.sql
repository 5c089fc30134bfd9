-- ranking_deltas: one run's ranking against another's, for every ordered pair of runs
-- (query with where run_a = ... and run_b = ...).
-- Input: run_pairs, rankings. Grain: (run_a, run_b, model), over the models ranked in either run.
-- score_a / score_b, rank_a / rank_b: avg_score and rank in each run (rankings); null when the
--   model is not in that run.
-- score_delta = score_b - score_a, rounded to 2 decimals (both have 2: the rounding only drops
--   float noise). rank_delta = rank_b - rank_a: below 0, the model moved up in run_b.
with ranked as (
    select * from rankings
),

models as (
    select distinct p.run_a, p.run_b, r.model
    from run_pairs as p
    inner join ranked as r on r.run_id in (p.run_a, p.run_b)
),

final as (
    select
        m.run_a,
        m.run_b,
        m.model,
        a.rank as rank_a,
        b.rank as rank_b,
        b.rank - a.rank as rank_delta,
        a.avg_score as score_a,
        b.avg_score as score_b,
        round(b.avg_score - a.avg_score, 2) as score_delta
    from models as m
    left join ranked as a on a.run_id = m.run_a and a.model = m.model
    left join ranked as b on b.run_id = m.run_b and b.model = m.model
)

select * from final order by run_a, run_b, rank_b nulls last, rank_a
