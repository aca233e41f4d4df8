"""Optional experiment tracking (`tracking=tensorboard|mlflow`): the run's settings, every epoch's loss,
loss terms, seconds and validation metrics, and the final metrics. Neither package is a dependency:
install the extra (`pip install -e '.[tensorboard]'` or `'.[mlflow]'`). The run folder keeps its own
record either way (config.json, metrics.json, train.log).

MLflow logs to MLFLOW_TRACKING_URI (e.g. sqlite:///mlflow.db or a tracking server); each training session
is one MLflow run, so a resumed run continues in a new MLflow run whose steps start at the resumed epoch.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import Config


def open_tracker(config: Config) -> TensorBoardTracker | MLflowTracker | None:
    if config.tracking == "tensorboard":
        return TensorBoardTracker(config)
    if config.tracking == "mlflow":
        return MLflowTracker(config)
    return None


def epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    """A history record as flat scalar names: loss, loss/<term>, valid/<metric>, seconds."""
    return {
        "loss": record["loss"],
        **{f"loss/{k}": v for k, v in record.get("terms", {}).items()},
        **{f"valid/{k}": v for k, v in record.get("valid", {}).items()},
        "seconds": record["seconds"],
    }


class TensorBoardTracker:
    """Event files in <run folder>/tensorboard (`tensorboard --logdir runs`)."""

    def __init__(self, config: Config) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError(
                "tracking=tensorboard needs tensorboard: pip install tensorboard (or the extra: pip install -e "
                "'.[tensorboard]')"
            ) from None
        self.writer = SummaryWriter(log_dir=str(config.run_dir / "tensorboard"))
        self.writer.add_text("settings", f"```\n{json.dumps(config.to_dict(), indent=2)}\n```")

    def epoch(self, record: dict[str, Any]) -> None:
        for name, value in epoch_scalars(record).items():
            self.writer.add_scalar(name, value, record["epoch"])
        self.writer.flush()

    def finish(self, result: dict[str, Any]) -> None:
        for name, value in result["test"].items():
            self.writer.add_scalar(f"test/{name}", value, result["best_epoch"])
        self.writer.close()


class MLflowTracker:
    def __init__(self, config: Config) -> None:
        try:
            import mlflow
        except ImportError:
            raise ImportError(
                "tracking=mlflow needs mlflow: pip install mlflow (or the extra: pip install -e '.[mlflow]')"
            ) from None
        self.mlflow = mlflow
        self.run_dir = config.run_dir
        mlflow.start_run(run_name=config.run_dir.name)
        mlflow.log_params({k: str(v)[:500] for k, v in config.to_dict().items()})

    def epoch(self, record: dict[str, Any]) -> None:
        self.mlflow.log_metrics(
            {name.replace("@", "_at_"): value for name, value in epoch_scalars(record).items()}, step=record["epoch"]
        )

    def finish(self, result: dict[str, Any]) -> None:
        self.mlflow.log_metrics({f"test/{k}".replace("@", "_at_"): v for k, v in result["test"].items()})
        for name in ("config.json", "metrics.json", "train.log"):
            self.mlflow.log_artifact(str(self.run_dir / name))
        self.mlflow.end_run()
