-- position_bias: whether a judge prefers an answer for where it stands, one row per judge with a
-- pairwise verdict (judge.pairwise). Every pair is shown in both orders, so with no position bias the
-- answer shown first wins half the decided verdicts whatever the answers' quality.
-- Input: stg_comparisons. Grain: (run_id, judge).
-- verdicts: valid verdicts; decided: those not a tie; first_wins / second_wins: decided verdicts for the
--   answer shown first / second; ties; total: every comparison row of the judge (any status).
-- first_rate = first_wins / decided: P(the first position wins | decided). Null when decided = 0.
--   Its exact two-sided binomial test against 0.5 is in warehouse/stats.py (position_bias).
-- pairs: unordered pairs (eval_id, sample, the two answers) with a valid verdict in both orders;
-- consistent: those whose two verdicts agree on the same answer (the same winner, or a tie both times).
-- consistency = consistent / pairs: 1 = the order never changes the verdict. Null when pairs = 0.
with verdicts as (
    select * from stg_comparisons
),

per_judge as (
    select
        run_id,
        judge,
        any_value(judge_family) as family,
        count(*) filter (where valid) as verdicts,
        count(*) filter (where decided) as decided,
        count(*) filter (where decided and verdict = '1') as first_wins,
        count(*) filter (where decided and verdict = '2') as second_wins,
        count(*) filter (where valid and verdict = 'tie') as ties,
        count(*) as total
    from verdicts
    group by run_id, judge
),

pairs as (
    select
        run_id,
        judge,
        min(coalesce(winner, '')) = max(coalesce(winner, '')) as consistent  -- '' stands for a tie
    from verdicts
    where valid
    group by run_id, judge, eval_id, sample, pair_a, pair_b
    having count(*) = 2
),

per_judge_pairs as (
    select run_id, judge, count(*) as pairs, count(*) filter (where consistent) as consistent
    from pairs
    group by run_id, judge
),

final as (
    select
        j.run_id,
        j.judge,
        j.family,
        j.verdicts,
        j.decided,
        j.first_wins,
        j.second_wins,
        j.ties,
        j.total,
        j.first_wins / nullif(j.decided, 0) as first_rate,
        coalesce(p.pairs, 0) as pairs,
        coalesce(p.consistent, 0) as consistent,
        p.consistent / nullif(p.pairs, 0) as consistency
    from per_judge as j
    left join per_judge_pairs as p using (run_id, judge)
)

select * from final order by run_id, judge
