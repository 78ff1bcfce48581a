"""The wings of the project import only down the layers, and feedback/ stays free of torch and of model/."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Bottom up; a wing may import its own modules and any wing of a lower layer. model.offline is beside every layer.
LAYERS = {
    "model.offline": -1,
    "model.unet": 0,
    "model.pipeline": 1,
    "model.data": 2,
    "model.prompts": 3,
    "model.training": 4,
    "model.evaluation": 4,
    "feedback": 4,
    "app": 5,
    "bench": 6,  # measures every layer, the served app included
}


def wing(module: str) -> str | None:
    return next((w for w in sorted(LAYERS, key=len, reverse=True) if module == w or module.startswith(w + ".")), None)


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


# model/__init__.py only names the public classes lazily, by module path.
SOURCES = [
    p
    for folder in ("model", "feedback", "app", "bench")
    for p in (ROOT / folder).rglob("*.py")
    if p != ROOT / "model" / "__init__.py"
]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_layers(path: Path):
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    own = wing(module)
    assert own is not None, f"{module} belongs to no layer; add its wing to LAYERS"
    for imported in imports(path):
        other = wing(imported)
        if other is None or other == own:
            continue
        assert LAYERS[other] < LAYERS[own], f"{module} imports {imported}, which is not below it"
        if own == "feedback":
            pytest.fail(f"feedback/ imports {imported}; it must not depend on model/ or app/")


@pytest.mark.parametrize("path", list((ROOT / "feedback").rglob("*.py")), ids=lambda p: p.name)
def test_feedback_imports_no_torch(path: Path):
    assert not {m for m in imports(path) if m.split(".")[0] in {"torch", "diffusers", "transformers"}}
