"""The package's layers point down: each part imports only parts of lower layers (or itself), lazy imports
inside functions included; serving, the report and evaluation never reach training."""

import ast
from pathlib import Path

import elcrec

PACKAGE = Path(elcrec.__file__).parent
LAYERS = {  # part of elcrec -> layer
    "__init__": 0.5,  # the package's face: Config and the version
    "config": 0,
    "runtime": 0,
    "distributed": 0,
    "progress": 0,
    "data": 1,
    "models": 2,
    "runs": 3,
    "evaluation": 3,
    "training": 4,
    "serving": 4,
    "report": 4,
    "cli": 5,
    "__main__": 6,
}


def part(module: str) -> str:
    """elcrec.models.intent -> models; elcrec -> __init__."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def is_module(name: str) -> bool:
    relative = PACKAGE.joinpath(*name.split(".")[1:])
    return relative.with_suffix(".py").is_file() or (relative / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """The elcrec modules a file imports, anywhere in it (relative imports resolved)."""
    module = "elcrec." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "elcrec"}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            target = ".".join(name for name in (base, node.module) if name)
            if target.split(".")[0] != "elcrec":
                continue
            names = [f"{target}.{alias.name}" for alias in node.names]
            found |= {name for name in names if is_module(name)} or {target}
    return found


def test_every_import_points_down():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = part("elcrec." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        assert own in LAYERS, f"{path}: a part without a layer; add it to LAYERS"
        for target in imports(path):
            other = part(target)
            if other != own and LAYERS[other] >= LAYERS[own]:
                wrong.append(
                    f"{path.relative_to(PACKAGE)} ({own}, layer {LAYERS[own]}) imports {target} (layer {LAYERS[other]})"
                )
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_lazy_and_relative_imports():
    assert "elcrec.serving.recommender" in imports(PACKAGE / "serving" / "app.py")
    assert "elcrec.progress" in imports(PACKAGE / "cli" / "main.py")  # imported inside a function
    assert "elcrec.distributed" in imports(PACKAGE / "training" / "trainer.py")  # from .. import distributed
    assert "elcrec.serving.app" in imports(PACKAGE / "serving" / "__init__.py")  # from . import app
