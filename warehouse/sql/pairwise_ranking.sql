-- pairwise_ranking: the models ranked by how often judges preferred their answer in pairwise verdicts.
-- Input: stg_comparisons. Grain: (run_id, model), every model in a valid verdict of the run.
-- Each valid verdict counts once for each of its two respondents; a pair's two orders are two verdicts.
-- comparisons: valid verdicts the model's answer was in; wins: verdicts that picked it; ties; losses.
-- win_rate = (wins + ties / 2) / comparisons: ties count half; 0.5 = as good as its opponents, unrounded.
-- rank: by win_rate, descending; equal win rates go to the earlier card in the pool.
with verdicts as (
    select * from stg_comparisons where valid
),

sides as (
    select run_id, first as model, first_index as pool_index, verdict = '1' as won, verdict = 'tie' as tied
    from verdicts
    union all
    select run_id, second, second_index, verdict = '2', verdict = 'tie'
    from verdicts
),

per_model as (
    select
        run_id,
        model,
        min(pool_index) as pool_index,
        count(*) as comparisons,
        count(*) filter (where won) as wins,
        count(*) filter (where tied) as ties,
        count(*) filter (where not won and not tied) as losses
    from sides
    group by run_id, model
),

final as (
    select
        run_id,
        rank() over (partition by run_id order by (2 * wins + ties) / (2 * comparisons) desc, pool_index) as rank,
        model,
        pool_index,
        (wins + ties / 2) / comparisons as win_rate,
        wins,
        ties,
        losses,
        comparisons
    from per_model
)

select * from final order by run_id, rank
