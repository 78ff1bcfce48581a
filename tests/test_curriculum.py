"""The curriculum file: every stage parses into a training run, and the shipped weights match their stage."""

import json
from pathlib import Path

import pytest

from model.pipeline.bundled import DEFAULT_BUNDLE
from model.training import curriculum
from model.training.curriculum import Curriculum, load_curriculum
from model.training.train import parse_args, scene_config


def test_every_stage_parses_into_training_arguments():
    stages = load_curriculum().stages
    assert list(stages) == sorted(stages) and len(stages) >= 9
    for stage in stages.values():
        for dense in (False, True):
            args = parse_args(stage.train_args(dense=dense))
            assert args.steps == stage.steps and args.out == str(stage.run_dir(dense))
            assert scene_config(args) == stage.scene_config()
            assert args.preset == ("tiny-dense" if dense else "tiny")
            if stage.after is not None:
                assert args.init == str(stages[stage.after].run_dir(dense) / "unet")


def test_shipped_bundle_matches_its_stage_and_every_stage_before():
    """``training.json`` records each stage it went through; each record is what the curriculum says."""
    plan = load_curriculum()
    record = json.loads((DEFAULT_BUNDLE / "training.json").read_text())
    for stage in reversed(plan.chain(plan.shipped)):
        args = parse_args(stage.train_args())
        assert record["steps"] == args.steps, stage.number
        assert record["batch_size"] == args.batch_size, stage.number
        ran = {k: v for k, v in record["data"].items() if v is not None}
        planned = {k: v for k, v in vars(args).items() if k in record["data"] and v not in (None, False)}
        assert ran == planned, stage.number
        recipe = record["recipe"]
        for key in ("lr", "warmup", "seed", "weight_decay", "balance_coef", "edge_coef"):
            assert recipe[key] == getattr(args, key), (stage.number, key)
        assert (recipe["cooldown"] or 0) == args.cooldown, stage.number
        assert recipe.get("schedule_steps", args.steps) == (args.schedule_steps or args.steps), stage.number
        record = record.get("continued_from")
    assert record is None  # the chain in training.json has exactly the curriculum's stages


def test_init_starts_a_stage_alone_and_extra_flags_reach_the_last_stage(caplog: pytest.LogCaptureFixture):
    caplog.set_level("INFO", logger="model.training.curriculum")
    curriculum.main(["--stage", "10", "--init", "weights/unet", "--dry-run", "--time-limit", "30"])
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Stage ")]
    args = parse_args(line.split("model.training.train ")[1].split())
    assert args.init == "weights/unet" and args.time_limit == 30 and args.out == "runs/stage10"
    assert args.max_objects == 3 and args.max_count == 3 and args.num_emoji is None and args.styles is None


def test_eval_flags_give_the_stage_slice(capsys: pytest.CaptureFixture):
    curriculum.main(["--stage", "2", "--eval-flags"])
    assert capsys.readouterr().out.split() == [
        "--max-objects", "2", "--max-count", "2", "--num-emoji", "30", "--styles", "flat"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shipped = 1\n[stage.1]\nsteps = 5\nbatchsize = 64\n", "unknown keys"),
        ("shipped = 1\n[stage.1]\nsteps = 5\ndata = { emoji = 3 }\n", "unknown data keys"),
        ("shipped = 2\n[stage.2]\nafter = 1\nsteps = 5\n", "listed before it"),
        ("shipped = 1\n[stage.1]\nsteps = 5\ndata = { max_count = 7 }\n", "max_count"),
        ("shipped = 3\n[stage.1]\nsteps = 5\n", "shipped stage 3"),
    ],
)
def test_a_wrong_curriculum_names_what_is_wrong(tmp_path: Path, text: str, message: str):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_curriculum(tmp_path / "c.toml")


def test_chain_refuses_an_unknown_stage():
    with pytest.raises(ValueError, match="STAGE must be one of"):
        Curriculum(stages={}, shipped=1).chain(4)
