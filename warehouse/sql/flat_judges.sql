-- flat_judges: whether each judge separates the models it judges, one row per judge of a run.
-- Input: judge_matrix, stg_judgments. Grain: (run_id, judge).
-- respondents: respondents the judge gave at least one valid score.
-- spread: max - min, over those respondents, of the judge's mean score for each (judge_matrix.mean_score).
-- score_sd: sample standard deviation (n - 1) of all its valid scores, 0 when n < 2, rounded to 2 decimals.
-- distinct_scores: distinct valid scores it gave.
-- flat: respondents >= 2 and spread <= scale_max / 100 (0.1 points on a 1-10 scale): its scores do not
--   tell the models apart, so it adds no information to their order, only pulls them together.
with matrix as (
    select * from judge_matrix
),

scores as (
    select
        run_id,
        judge,
        any_value(scale_max) as scale_max,
        round_even(coalesce(stddev_samp(score), 0), 2) as score_sd,
        count(distinct score) as distinct_scores
    from stg_judgments
    where valid
    group by run_id, judge
),

spreads as (
    select
        run_id,
        judge,
        any_value(judge_family) as family,
        count(mean_score) as respondents,
        max(mean_score) - min(mean_score) as spread
    from matrix
    group by run_id, judge
),

final as (
    select
        p.run_id,
        p.judge,
        p.family,
        p.respondents,
        p.spread,
        s.score_sd,
        s.distinct_scores,
        coalesce(p.respondents >= 2 and p.spread <= s.scale_max / 100, false) as flat
    from spreads as p
    left join scores as s using (run_id, judge)
)

select * from final order by run_id, judge
