-- family_leniency: how each model family judges each family, one row per (judge family, respondent
-- family) pair of a run; the diagonal shows whether a family favours its own models.
-- Input: judge_matrix. Grain: (run_id, judge_family, respondent_family), pairs with a valid score;
-- families come from the cards.
-- n: valid weighted scores judges of judge_family gave answers of respondent_family models.
-- judges, respondents: distinct cards behind those scores.
-- mean_score: their mean, rounded to 2 decimals half-to-even (as mean_2dp).
-- others_mean: the same mean over the valid scores respondent_family got from judges of every other family.
-- vs_others: mean_score - others_mean (exact); above 0, judge_family scores respondent_family higher
--   than the other families do. Null when no other family judged respondent_family.
with cells as (
    select
        run_id,
        judge_family,
        respondent_family,
        sum(score_sum) as score_sum,
        sum(n) as n,
        count(distinct judge) as judges,
        count(distinct respondent) as respondents
    from judge_matrix
    where n > 0
    group by run_id, judge_family, respondent_family
),

final as (
    select
        *,
        sum_2dp(score_sum, n) as mean_score,
        rest_2dp(score_sum, n, run_id, respondent_family) as others_mean,
        mean_score - others_mean as vs_others
    from cells
)

select * from final order by run_id, judge_family, respondent_family
