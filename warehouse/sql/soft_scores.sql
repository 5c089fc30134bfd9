-- soft_scores: the judges' expected scores beside their sampled ones, per respondent (judge.soft_scores).
-- Input: stg_judgments. Grain: (run_id, model), every respondent with a valid judgment that has a soft score.
-- A judgment's soft_score is the weighted mean over criteria of each criterion's expected score under the
-- judge's probabilities of the score tokens (definition: jobs/judge.py, soft_criteria); its score is the
-- sampled one. Over the valid judgments with a soft score:
-- n: how many; avg_soft_score, avg_score: their means (unrounded); avg_gap = avg_soft_score - avg_score
-- (negative: the judge's probability leaned below what it wrote);
-- mean_abs_gap: mean of |soft_score - score|, how far sampling moved a score from its expectation.
with scored as (
    select * from stg_judgments where valid and soft_score is not null
),

final as (
    select
        run_id,
        respondent as model,
        min(pool_index) as pool_index,
        count(*) as n,
        avg(soft_score) as avg_soft_score,
        avg(score) as avg_score,
        avg(soft_score) - avg(score) as avg_gap,
        avg(abs(soft_score - score)) as mean_abs_gap
    from scored
    group by run_id, respondent
)

select * from final order by run_id, pool_index
