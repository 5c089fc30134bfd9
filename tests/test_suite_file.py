"""evals=file: prompts from JSONL, Parquet and CSV files at fsspec URLs, every bad input refused up front.

The real CPU pool runs one Parquet-folder suite read from S3 (moto on 127.0.0.1) in test_e2e_suite_file;
here: the reader on every format, local and S3, the subset, the errors, the plan and a fake-engine run
with a resume after one row changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sweep import suite_file
from sweep.core.errors import SweepError
from sweep.plan import plan
from tests.conftest import compose_config, fake_pool
from tests.test_plan import LAPTOP
from warehouse.db import connect

ROOT_DIR = Path(__file__).resolve().parents[1]
SMOKE = compose_config("evals=smoke").evals.prompts
ROWS = [{"id": p.id, "prompt": p.prompt, "rubric": p.rubric, "category": p.category} for p in SMOKE]


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def load(path: Path | str, *overrides: str) -> tuple[list, suite_file.Source]:
    conf, source = suite_file.resolve(compose_config("evals=file", f"evals.path={path}", *overrides))
    assert source is not None
    return conf.evals.prompts, source


def test_the_three_formats_and_a_folder_give_the_smoke_suite(tmp_path: Path) -> None:
    jsonl(tmp_path / "smoke.jsonl", ROWS)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "smoke.parquet")
    (tmp_path / "smoke.csv").write_text(_csv(ROWS))
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS[:2]), folder / "a.parquet")
    jsonl(folder / "b.jsonl", ROWS[2:])
    (folder / "_SUCCESS").write_text("")
    for path in (tmp_path / "smoke.jsonl", tmp_path / "smoke.parquet", tmp_path / "smoke.csv", folder):
        prompts, source = load(path)
        assert prompts == list(SMOKE), path
        assert source.rows == 3 and len(source.sha256) == 64
    conf = compose_config("evals=file", f"evals.path={tmp_path / 'smoke.jsonl'}")
    assert conf.evals.name == "smoke"  # the file's stem
    assert compose_config("evals=file", f"evals.path={folder}/", "evals.name=mine").evals.name == "mine"
    # Same prompts, same judge brief and criteria: the plan is the YAML suite's, cell for cell.
    from_file = plan(suite_file.resolve(conf)[0], "r", LAPTOP)
    from_yaml = plan(compose_config("evals=smoke"), "r", LAPTOP)
    assert [c.key for c in (*from_file.generate, *from_file.judge)] == \
        [c.key for c in (*from_yaml.generate, *from_yaml.judge)]


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_columns_map_ids_stay_text_and_a_reference_answer_reaches_the_rubric(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('qid,question,gold\n007,"Two\nlines?",42\n8,Why?,\n')
    prompts, _ = load(path, "evals.fields.id=qid", "evals.fields.prompt=question", "evals.fields.reference=gold")
    assert [(p.id, p.prompt, p.category) for p in prompts] == [("007", "Two\nlines?", ""), ("8", "Why?", "")]
    assert prompts[0].rubric == "Reference answer: 42" and prompts[1].rubric == suite_file.NO_RUBRIC


def test_the_subset_is_reproducible_and_stable_under_reordering(tmp_path: Path) -> None:
    rows = [{"id": f"q{i}", "prompt": f"Question {i}?"} for i in range(50)]
    jsonl(tmp_path / "a.jsonl", rows)
    jsonl(tmp_path / "b.jsonl", rows[::-1])
    first = [p.id for p in load(tmp_path / "a.jsonl", "evals.limit=10", "evals.seed=3")[0]]
    assert len(first) == 10 and first == sorted(first, key=lambda i: int(i[1:]))  # file order kept
    assert first == [p.id for p in load(tmp_path / "a.jsonl", "evals.limit=10", "evals.seed=3")[0]]
    assert sorted(first) == sorted(p.id for p in load(tmp_path / "b.jsonl", "evals.limit=10", "evals.seed=3")[0])
    other = [p.id for p in load(tmp_path / "a.jsonl", "evals.limit=10", "evals.seed=4")[0]]
    assert other != first
    assert len(load(tmp_path / "a.jsonl", "evals.limit=99")[0]) == 50


def test_a_suite_on_s3(s3_root: tuple[str, dict], tmp_path: Path) -> None:
    import s3fs

    root, options = s3_root
    fs = s3fs.S3FileSystem(**options)
    local = jsonl(tmp_path / "smoke.jsonl", ROWS)
    fs.put(str(local), f"{root}/suites/smoke.jsonl")
    prompts, source = load(f"{root}/suites/smoke.jsonl", f"+evals.storage_options.endpoint_url={options['endpoint_url']}")
    assert prompts == list(SMOKE) and source.url == f"{root}/suites/smoke.jsonl"
    assert source.sha256 == load(local)[1].sha256  # the same bytes under the same name


BAD = [
    ("missing file", lambda d: d / "nope.jsonl", (), "nope.jsonl does not exist", "check the path"),
    ("unsupported extension", lambda d: _write(d / "p.xlsx", b"x"), (), "p.xlsx: unsupported extension '.xlsx'",
     "convert it"),
    ("missing column", lambda d: jsonl(d / "p.jsonl", [{"id": "a", "question": "Hi?"}]), (),
     "p.jsonl line 1 has no column 'prompt' (the prompt; its columns: id, question)", "evals.fields.prompt=<column>"),
    ("mapped column absent", lambda d: jsonl(d / "p.jsonl", [{"id": "a", "prompt": "Hi?"}]),
     ("evals.fields.rubric=grading",), "p.jsonl line 1 has no column 'grading' (the rubric", "evals.fields.rubric="),
    ("empty prompt", lambda d: jsonl(d / "p.jsonl", [{"id": "a", "prompt": "Hi?"}, {"id": "b", "prompt": "  "}]), (),
     "p.jsonl line 2 (id 'b') has an empty prompt", "write the prompt, or remove the row"),
    ("null prompt in Parquet", lambda d: _parquet(d / "p.parquet", [{"id": "a", "prompt": "Hi?"}, {"id": "b", "prompt": None}]),
     (), "p.parquet row 2 (id 'b') has an empty prompt", "write the prompt"),
    ("empty id", lambda d: _write(d / "p.csv", b"id,prompt\n,Hi?\n"), (), "p.csv row 1 has an empty id", "give every row"),
    ("duplicate ids", lambda d: jsonl(d / "p.jsonl", [{"id": "a", "prompt": "Hi?"}, {"id": "b", "prompt": "Yo?"},
                                                         {"id": "a", "prompt": "Hi?"}]), (),
     "p.jsonl line 3 repeats id 'a' of ", "remove the repeated row"),
    ("same id, other text", lambda d: jsonl(d / "p.jsonl", [{"id": "a", "prompt": "Hi?"}, {"id": "a", "prompt": "Yo?"}]),
     (), "p.jsonl line 2 repeats id 'a' of ", "give one of the two prompts another id"),
    ("not UTF-8", lambda d: _write(d / "p.jsonl", '{"id": "a", "prompt": "Hi?"}\n{"id": "b", "prompt": "café"}\n'
                                   .encode("latin-1")), (), "p.jsonl is not UTF-8: byte 55 (line 2)", "iconv"),
    ("not UTF-8 CSV", lambda d: _write(d / "p.csv", "id,prompt\na,café\n".encode("latin-1")), (),
     "p.csv is not UTF-8: byte 15 (line 2)", "re-encode the file as UTF-8"),
    ("not JSON", lambda d: _write(d / "p.jsonl", b'{"id": "a", "prompt": "Hi?"}\n{"id": "b",\n'), (),
     "p.jsonl line 2 is not JSON", "one JSON object per line"),
    ("not Parquet", lambda d: _write(d / "p.parquet", b"PAR1 nonsense"), (), "p.parquet is not a readable Parquet file",
     "rewrite it"),
    ("empty file", lambda d: _write(d / "p.jsonl", b"\n"), (), "p.jsonl holds no rows", "add prompts"),
    ("stray file in a folder", lambda d: _folder(d, {"a.jsonl": b'{"id": "a", "prompt": "Hi?"}\n', "notes.txt": b"x"}),
     (), "notes.txt: unsupported extension '.txt'", "move it out of the suite's folder"),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _folder(d: Path, files: dict[str, bytes]) -> Path:
    (d / "suite").mkdir()
    for name, data in files.items():
        (d / "suite" / name).write_bytes(data)
    return d / "suite"


@pytest.mark.parametrize("case, make, overrides, problem, fix", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_error_naming_the_file_the_row_and_the_fix(
        tmp_path: Path, case: str, make, overrides: tuple[str, ...], problem: str, fix: str) -> None:  # noqa: ANN001
    path = make(tmp_path)
    with pytest.raises(SweepError) as e:
        load(path, *overrides)
    assert problem in e.value.problem and str(tmp_path) in e.value.problem, e.value.problem
    assert fix in e.value.fix, e.value.fix


def test_the_cli_refuses_a_bad_file_before_ray_starts(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "p.jsonl", [{"id": "a", "prompt": "Hi?"}, {"id": "a", "prompt": "Yo?"}])
    out = subprocess.run([sys.executable, "-m", "sweep", "evals=file", f"evals.path={path}",
                          f"warehouse.root={tmp_path / 'wh'}"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT_DIR)
    assert out.returncode == 2, out.stderr
    assert out.stderr == (f"error: {path} line 2 repeats id 'a' of {path} line 1 with a different prompt\n"
                          "fix: give one of the two prompts another id\n")
    assert not (tmp_path / "wh").exists()
    fine = jsonl(tmp_path / "fine.jsonl", ROWS)
    planned = subprocess.run([sys.executable, "-m", "sweep", "evals=file", f"evals.path={fine}", "plan=true",
                              "judge.judges_per_answer=1"], capture_output=True, text=True, timeout=120, cwd=ROOT_DIR)
    assert planned.returncode == 0 and "makespan" in planned.stdout, planned.stderr
    planned = subprocess.run([sys.executable, "-m", "sweep", "evals=file", "plan=true"], capture_output=True,
                             text=True, timeout=120, cwd=ROOT_DIR)
    assert planned.returncode == 2 and "error: suite 'file' has no prompts" in planned.stderr and "evals.path=URL" in planned.stderr, planned.stderr


def test_identical_texts_with_different_ids_are_two_cells(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "twins.jsonl", [{"id": "one", "prompt": "Name a prime.", "rubric": "Any prime."},
                                            {"id": "two", "prompt": "Name a prime.", "rubric": "The smallest: 2."}])
    p = plan(suite_file.resolve(compose_config("evals=file", f"evals.path={path}"))[0], "r", LAPTOP)
    assert len(p.generate) == 3 * 2 and len({c.key for c in p.generate}) == 6
    assert len({c.key for c in p.judge}) == len(p.judge) == 3 * 2 * 2


@pytest.mark.usefixtures("ray_local")
def test_a_jsonl_suite_runs_records_its_file_and_resumes_only_the_changed_row(tmp_path: Path) -> None:
    from sweep.run import run

    path = jsonl(tmp_path / "mine.jsonl", ROWS)
    args = (f"warehouse.root={tmp_path / 'wh'}", "run.name=file", "evals=file", f"evals.path={path}")
    first = run(fake_pool(*args))
    con = connect(first.store)
    source, sha, rows, suite, cells = con.execute(
        "select suite_source, suite_sha256, suite_rows, suite, generate_cells from runs").fetchone()
    assert (source, rows, suite, cells) == (str(path), 3, "mine", 9)
    assert sha == suite_file.load(compose_config("evals=file", f"evals.path={path}").evals)[1].sha256
    assert con.execute("select count(*), count(distinct eval_id) from generations where status = 'ok'").fetchone() \
        == (9, 3)
    jsonl(path, [ROWS[0], {**ROWS[1], "prompt": "What is 18 + 25? Reply with the number only."}, ROWS[2]])
    again = run(fake_pool(*args))
    con = connect(again.store)
    # 3 answers and 6 judgments of the changed row are new; 6 answers + 12 judgments reused.
    assert con.execute("select reused_cells, suite_sha256 <> ? from runs", [sha]).fetchone() == (18, True)
    (prompt,) = con.execute("select distinct prompt from generations where eval_id = 'addition'").fetchone()
    assert prompt.startswith("What is 18 + 25?")
