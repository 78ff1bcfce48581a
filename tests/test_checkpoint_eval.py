"""A run scores its checkpoints while it trains: rows per set in evals.jsonl, reports, the curve, and a kill."""

import json

import pytest

from model.training.checkpoint_eval import EVALS, eval_rows, parse_eval_sets
from model.training.train import main, parse_args
from tests.test_train import run_args

# Two prompts of the run's own slice, at two sampling steps: the plumbing, not a score.
SETS = {
    "tiny": ["--n", "2", "--steps", "2", "--batch", "2", "--num-emoji", "4", "--max-objects", "1", "--max-count", "1"]
}


@pytest.mark.slow
def test_a_run_scores_every_nth_checkpoint_and_a_killed_scoring_is_redone(tmp_path):
    main(run_args(tmp_path, 4, eval_every=2, eval_sets=json.dumps(SETS)))
    run = tmp_path / "run"
    rows = eval_rows(run)
    assert [(row["step"], row["set"], row["n"]) for row in rows] == [(2, "tiny", 2), (4, "tiny", 2)]
    for row in rows:
        assert set(row["accuracy"]) >= {"identity", "composition"}
        assert all(0 <= row["passed"][m] <= 2 for m in ("identity", "composition"))
        assert row["passed"]["composition"] / 2 == row["accuracy"]["composition"]
        report = run / "eval" / f"step{row['step']}-tiny"
        assert "run-step" in (report / "results.md").read_text()
        results = json.loads((report / "results.json").read_text())
        assert results["models"][f"run-step{row['step']}"]["n"] == 2
    assert not list(run.glob("bundle-*"))  # the scored bundle is not left behind
    assert (run / "curves.png").stat().st_size > 0
    # The scoring's minutes are not a step's: every step stays near the others.
    secs = [json.loads(line)["sec"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert max(secs) < 20

    # Killed while scoring step 4: the resumed run scores it before going on.
    (run / EVALS).write_text(json.dumps(rows[0]) + "\n")
    main(run_args(tmp_path, 4, eval_every=2, eval_sets=json.dumps(SETS)))
    assert [row["step"] for row in eval_rows(run)] == [2, 4]


def test_a_failed_scoring_is_logged_and_training_goes_on(tmp_path, caplog):
    broken = {"tiny": ["--n", "2", "--no-such-flag"]}
    main(run_args(tmp_path, 2, eval_every=2, eval_sets=json.dumps(broken)))
    assert "The tiny evaluation at step 2 failed" in caplog.text
    assert eval_rows(tmp_path / "run") == []
    assert (tmp_path / "run" / "state.pt").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"eval_every": 2}, "--eval-every and --eval-sets go together"),
        ({"eval_sets": json.dumps(SETS)}, "--eval-every and --eval-sets go together"),
        ({"eval_every": -1, "eval_sets": json.dumps(SETS)}, "--eval-every must be 0"),
        ({"eval_every": 2, "eval_sets": "[]"}, "--eval-sets: it must be a JSON object"),
        ({"eval_every": 2, "eval_sets": '{"a b": []}'}, "--eval-sets: set names are"),
        ({"eval_every": 2, "eval_sets": '{"x": [1]}'}, "--eval-sets: the set 'x' must list"),
    ],
)
def test_bad_scoring_flags_are_refused_with_the_flag_named(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        parse_args(run_args(tmp_path, 2, **extra))
    assert message in capsys.readouterr().err


def test_eval_sets_parse_to_argument_lists():
    assert parse_eval_sets(json.dumps(SETS)) == SETS
