"""Bring your own prompts, for real: a Parquet folder on S3 (moto on 127.0.0.1) is the suite of one sweep of
the packaged CPU pool on real vLLM, judged by a panel of K=1 (the JSONL path runs on the fake engine in
test_suite_file.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sweep import suite_file
from tests.conftest import compose_config
from warehouse.db import connect
from warehouse.store import Store

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[1]


def test_a_parquet_folder_on_s3_is_the_suite_of_a_real_sweep(s3_root: tuple[str, dict], tmp_path: Path) -> None:
    import s3fs

    root, options = s3_root
    fs = s3fs.S3FileSystem(**options)
    smoke = {p.id: p for p in compose_config("evals=smoke").evals.prompts}
    # Other column names than the defaults, mapped on the command line; the ids as integers.
    parts = {"part-0.parquet": [(1, smoke["capital-france"])], "part-1.parquet": [(2, smoke["addition"])]}
    for name, items in parts.items():
        local = tmp_path / name
        pq.write_table(pa.Table.from_pylist([{"qid": i, "question": p.prompt, "rubric": p.rubric} for i, p in items]),
                       local)
        fs.put(str(local), f"{root}/suites/mine/{name}")
    url = f"{root}/suites/mine/"
    args = ["evals=file", f"evals.path={url}", f"+evals.storage_options.endpoint_url={options['endpoint_url']}",
            "evals.fields.id=qid", "evals.fields.prompt=question"]
    wh = tmp_path / "warehouse"
    out = subprocess.run(
        [sys.executable, "-m", "sweep", *args, "judge.judges_per_answer=1", "sampling.max_tokens=32",
         "judge.justification_max_chars=80", f"warehouse.root={wh}", "run.name=byo", "run.progress=false"],
        capture_output=True, text=True, timeout=1200, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "3 models x 2 prompts (mine) -> 6 answers, 6 judgments" in out.stderr, out.stderr[-2000:]
    con = connect(Store(str(wh)))
    run = con.execute("select suite, suite_source, suite_sha256, suite_rows, generate_cells, judge_cells "
                      "from runs").fetchone()
    sha = suite_file.load(compose_config(*args).evals)[1].sha256
    assert run == ("mine", url, sha, 2, 6, 6)
    (answer,) = con.execute("select answer from generations where model = 'SmolLM2-135M' and eval_id = '1'").fetchone()
    assert "Paris" in answer  # real model output for the file's first prompt
    assert con.execute("select count(*), count(distinct model), count(distinct eval_id) from generations").fetchone() \
        == (6, 3, 2)
    # K=1: each answer has exactly one judge, never its own model, and every model judges twice.
    judged = con.execute("select respondent, eval_id, count(*), bool_or(judge = respondent) from judgments "
                         "group by all").fetchall()
    assert len(judged) == 6 and all(n == 1 and not own for *_, n, own in judged)
    assert sorted(n for (n,) in con.execute("select count(*) from judgments group by judge").fetchall()) == [2, 2, 2]
    statuses = dict(con.execute("select status, count(*) from judgments group by 1").fetchall())
    (unseen,) = con.execute("select count(*) from generations where status not in ('ok', 'truncated')").fetchone()
    assert statuses.get("ok", 0) == 6 - unseen > 0 and statuses.get("no_answer", 0) == unseen, statuses
    assert "Ranking, run byo" in out.stdout
