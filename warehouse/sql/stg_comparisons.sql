-- stg_comparisons: one row per pairwise verdict (judge.pairwise), flagged as the pairwise views use it.
-- Input: raw_comparisons. Grain: (run_id, judge, eval_id, sample, first, second): each unordered pair of
-- answers to one prompt appears twice per judge, once in each order.
-- valid: the verdict parsed (status = 'ok'), so verdict is '1' (the answer shown first), '2' or 'tie'.
-- decided: valid and not a tie. A cell written twice (retried) counts once: its newest row (latest_rows).
-- pair_a, pair_b: the two respondents, alphabetically, so both orders of a pair share them.
with latest as (
    select * from latest_rows('raw_comparisons')
),

final as (
    select
        *,
        coalesce(status = 'ok' and verdict in ('1', '2', 'tie'), false) as valid,
        coalesce(status = 'ok' and verdict in ('1', '2'), false) as decided,
        least(first, second) as pair_a,
        greatest(first, second) as pair_b
    from latest
)

select * from final
