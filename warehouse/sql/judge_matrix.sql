-- judge_matrix: how each judge scored each respondent, one row per (judge, respondent) pair of a run.
-- Input: stg_judgments. Grain: (run_id, judge, respondent); every pair with a judgment row.
-- score_sum: sum of the valid weighted scores the judge gave the respondent's answers (all evals, all
--   samples), exact to 6 decimals. n: those valid scores. total: all judgment rows of the pair.
-- mean_score: score_sum / n rounded to 2 decimals half-to-even, as mean_2dp does; null when n = 0.
-- others_mean: the same mean over the valid scores the respondent got from every other judge.
-- vs_others: mean_score - others_mean (exact: both have 2 decimals); above 0, this judge scores
--   this respondent higher than the rest of the panel does. Null when either side has no valid score.
with pairs as (
    select
        run_id,
        judge,
        respondent,
        any_value(judge_family) as judge_family,
        any_value(respondent_family) as respondent_family,
        any_value(pool_index) as pool_index,
        coalesce(sum(score::decimal(18, 6)) filter (where valid), 0) as score_sum,
        count(*) filter (where valid) as n,
        count(*) as total
    from stg_judgments
    group by run_id, judge, respondent
),

final as (
    select
        *,
        sum_2dp(score_sum, n) as mean_score,
        rest_2dp(score_sum, n, run_id, respondent) as others_mean,
        mean_score - others_mean as vs_others
    from pairs
)

select * from final order by run_id, judge, pool_index
