"""The curriculum file: every stage parses into a training run, and the shipped weights match their stage."""

import json
import subprocess
from pathlib import Path

import pytest

from model.pipeline.bundled import DEFAULT_BUNDLE
from model.training import curriculum
from model.training.curriculum import VARIANTS, Curriculum, load_curriculum, run_dir
from model.training.train import parse_args, scene_config

ROOT = Path(__file__).resolve().parents[1]
# What each ablation variant trains: its preset and the weight of its edge loss.
VARIANT_RECIPES = {
    None: ("tiny", 1.0),
    "dense": ("tiny-dense", 1.0),
    "no-space": ("tiny-no-space", 1.0),
    "no-time": ("tiny-no-time", 1.0),
    "no-edge": ("tiny", 0.0),
}


def test_every_stage_parses_into_training_arguments_of_every_variant():
    stages = load_curriculum().stages
    assert list(stages) == sorted(stages) and len(stages) >= 9
    assert set(VARIANT_RECIPES) == {None, *VARIANTS}
    for stage in stages.values():
        for variant, (preset, edge_coef) in VARIANT_RECIPES.items():
            args = parse_args(stage.train_args(variant))
            assert args.steps == stage.steps and args.out == str(stage.run_dir(variant))
            assert args.out == f"runs/stage{stage.number}" + (f"-{variant}" if variant else "")
            assert scene_config(args) == stage.scene_config()
            assert (args.preset, args.edge_coef) == (preset, edge_coef)
            if stage.after is not None:  # a variant's stage starts from the variant's own stage before
                assert args.init == str(stages[stage.after].run_dir(variant) / "unet")


def test_an_unknown_variant_names_the_known_ones():
    with pytest.raises(ValueError, match="no-space"):
        run_dir(1, "no-moe")
    with pytest.raises(SystemExit):
        curriculum.parse_args(["--variant", "no-moe"])


def logged_commands(caplog: pytest.LogCaptureFixture) -> list[list[str]]:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Stage ")]
    return [line.split("model.training.train ")[1].split() for line in lines]


def test_ablation_trains_the_full_model_then_each_variant_each_from_its_own_stage_before(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level("INFO", logger="model.training.curriculum")
    curriculum.main(["--stage", "2", "--ablation", "--steps", "7", "--dry-run", "--time-limit", "30"])
    commands = [parse_args(command) for command in logged_commands(caplog)]
    assert [args.out for args in commands] == [
        f"runs/stage{n}" + (f"-{variant}" if variant else "") for variant in VARIANT_RECIPES for n in (1, 2)
    ]
    for first, second in zip(commands[::2], commands[1::2]):
        assert first.init is None and second.init == f"{first.out}/unet"
        assert (first.steps, first.time_limit) == (5550, 0) and (second.steps, second.time_limit) == (7, 30)
        assert (first.preset, first.edge_coef) == (second.preset, second.edge_coef)


def test_ablation_refuses_one_init_for_every_chain():
    with pytest.raises(SystemExit):
        curriculum.parse_args(["--ablation", "--init", "weights/unet"])


def make_dry_run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-n", *arguments], cwd=ROOT, capture_output=True, text=True)


def test_make_passes_the_variant_and_the_ablation_stage():
    train = make_dry_run("train", "STAGE=1", "VARIANT=no-space")
    assert train.returncode == 0, train.stderr
    assert "-m model.training.curriculum --stage 1 --variant no-space" in " ".join(train.stdout.split())
    assert "--variant dense" in make_dry_run("train-dense").stdout
    ablation = make_dry_run("ablation", "STAGE=1", "TRAIN_STEPS=9")
    assert "-m model.training.curriculum --ablation --stage 1 --steps 9" in " ".join(ablation.stdout.split())
    evaluation = make_dry_run("ablation-eval", "STAGE=1")
    assert "-m model.evaluation.ablation --stage 1 --n 256 --out eval/ablation-stage1" in evaluation.stdout
    for target in ("ablation", "ablation-eval"):
        refused = make_dry_run(target)
        assert refused.returncode != 0 and f"make {target} needs STAGE=n" in refused.stderr


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
    (command,) = logged_commands(caplog)
    args = parse_args(command)
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
        ("shipped = 1\n[stage.1]\nsteps = 5\neval = { every = 0, sets = {} }\n", "eval takes 'every'"),
        ("shipped = 1\n[stage.1]\nsteps = 5\neval = { every = 5, sets = { a = { m = 2 } } }\n", "set 'a' takes"),
        ("shipped = 1\n[stage.1]\nsteps = 5\neval = { every = 5, sets = { a = { n = 2, stage = 4 } } }\n", "stage 4"),
    ],
)
def test_a_wrong_curriculum_names_what_is_wrong(tmp_path: Path, text: str, message: str):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_curriculum(tmp_path / "c.toml")


def test_a_stage_scores_its_checkpoints_on_its_own_slice_and_an_earlier_one(tmp_path: Path):
    text = """shipped = 1
[stage.1]
steps = 5
data = { num_emoji = 30, max_objects = 2, max_count = 2, styles = ["flat"] }
[stage.2]
after = 1
steps = 9
data = { max_objects = 3, max_count = 3 }
eval = { every = 3, sets = { domain = { n = 128 }, slice = { stage = 1, n = 256 } } }
"""
    (tmp_path / "c.toml").write_text(text)
    stages = load_curriculum(tmp_path / "c.toml").stages
    assert stages[1].scoring is None and "--eval-every" not in stages[1].train_args()
    args = parse_args(stages[2].train_args())
    assert args.eval_every == 3
    assert json.loads(args.eval_sets) == {
        "domain": ["--n", "128", "--max-objects", "3", "--max-count", "3"],
        "slice": ["--n", "256", "--max-objects", "2", "--max-count", "2", "--num-emoji", "30", "--styles", "flat"],
    }


def test_chain_refuses_an_unknown_stage():
    with pytest.raises(ValueError, match="STAGE must be one of"):
        Curriculum(stages={}, shipped=1).chain(4)
