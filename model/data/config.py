"""What a stream of emoji scenes contains: the knobs of the curriculum and the split."""

from dataclasses import dataclass, fields
from typing import Any

from model.data.styles import STYLES
from model.pipeline.buckets import ASPECT_BUCKETS

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class SceneConfig:
    """Scene generator settings.

    Args:
        sample_size (`int`, defaults to 32): base scale in pixels; bucket sizes scale with it (multiple of 8).
        num_emoji (`int | None`, defaults to None): use only the first N atlas emoji (curriculum); None = all.
        max_objects (`int`, defaults to 3): most distinct emoji per scene (1-5, one per position).
        max_count (`int`, defaults to 3): most instances of one emoji (1-3).
        object_weights (`tuple[float, ...] | None`, defaults to None): relative frequency of scenes with
            1, 2, ... `max_objects` distinct emoji, to give a stage more of the scenes a model finds
            hardest; None = equally often.
        styles (`tuple[str, ...] | None`, defaults to None): allowed styles; None = all of `STYLES`.
        buckets (`tuple[str, ...] | None`, defaults to None): allowed aspect buckets; None = all.
        split (`str`, defaults to "train"): "train" never produces the reserved combinations and
            caption phrasings; "heldout" always contains one reserved combination.
        paraphrases (`bool`, defaults to False): training captions also name emoji by the extra words of
            `model.data.paraphrases` (stage 9 on); the "heldout" split ignores it, so held-out prompts stay the same.
    """

    sample_size: int = 32
    num_emoji: int | None = None
    max_objects: int = 3
    max_count: int = 3
    object_weights: tuple[float, ...] | None = None
    styles: tuple[str, ...] | None = None
    buckets: tuple[str, ...] | None = None
    split: str = "train"
    paraphrases: bool = False

    def __post_init__(self) -> None:
        if self.sample_size % 8 or self.sample_size < 24:
            raise ValueError(f"sample_size must be a multiple of 8 and at least 24, got {self.sample_size}.")
        if self.num_emoji is not None and self.num_emoji < 2:
            raise ValueError(f"num_emoji must be None or at least 2, got {self.num_emoji}.")
        if not 1 <= self.max_objects <= 5:
            raise ValueError(f"max_objects must be in 1..5, got {self.max_objects}.")
        if not 1 <= self.max_count <= 3:
            raise ValueError(f"max_count must be in 1..3, got {self.max_count}.")
        if self.object_weights is not None and (
            len(self.object_weights) != self.max_objects
            or min(self.object_weights) < 0
            or not sum(self.object_weights[: self.max_instances]) > 0
        ):
            raise ValueError(
                f"object_weights needs {self.max_objects} non-negative weights (one per number of emoji), some "
                f"positive within the {self.max_instances} objects a {self.sample_size} px scene holds, got "
                f"{self.object_weights}."
            )
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}.")
        for style in self.styles or ():
            if style not in STYLES:
                raise ValueError(f"Unknown style {style!r}; choose from {STYLES}.")
        for bucket in self.buckets or ():
            if bucket not in ASPECT_BUCKETS:
                raise ValueError(f"Unknown bucket {bucket!r}; choose from {tuple(ASPECT_BUCKETS)}.")

    @property
    def style_names(self) -> tuple[str, ...]:
        """The styles this config samples from."""
        return self.styles or STYLES

    @property
    def bucket_names(self) -> tuple[str, ...]:
        """The aspect buckets this config samples from."""
        return self.buckets or tuple(ASPECT_BUCKETS)

    @property
    def max_instances(self) -> int:
        """Most rendered sprites per scene: 3 at 32 px keeps them legible, more room at 64 px."""
        return 3 * max(1, self.sample_size // 32)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SceneConfig":
        """A config from plain values, as TOML and JSON give them (lists for tuples); unknown keys are an error."""
        if unknown := set(data) - {f.name for f in fields(cls)}:
            raise ValueError(f"Unknown scene settings {sorted(unknown)}.")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if values.get("object_weights") is not None:
            values["object_weights"] = tuple(map(float, values["object_weights"]))
        return cls(**values)
