"""`elcrec report RUN`: one self-contained HTML page about a run (figures embedded; the PNGs are also
written beside it), as the paper shows what was learned:

- training curves: the loss and its named terms, and the validation metrics, per epoch;
- the final metrics: best epoch's validation and the test split;
- for intent models (ICLRec, ELCRec): a t-SNE map of a sample of users' intent representations,
  coloured by intent (the ten largest; the rest grey) with the centres marked; the intent-size
  distribution; and the activity analysis: users split by number of interactions into quartiles
  (new, low, medium, high activity) and, per group, the share of each intent, its top and bottom three.

Needs matplotlib (`pip install elcrec[plot]`).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from .data import load_dataset
from .evaluation.intents import user_intents
from .models.intent import IntentModel
from .runs import METRICS_FILE, RunError, load_run

ACTIVITY_GROUPS = ("new", "low", "medium", "high")
COLOURED_INTENTS = 10


def write_report(
    run_dir: str | Path, data: str | None = None, out: str | Path | None = None, sample: int = 2000, device: str = "cpu"
) -> Path:
    """Write `report.html` (and its PNGs) into `out` (default: the run folder); returns the page's path."""
    import matplotlib

    matplotlib.use("Agg")

    run = load_run(run_dir, device)
    metrics = run.result()
    if metrics is None:
        raise RunError(f"{run.path / METRICS_FILE} not found: the report needs a finished run (elcrec train)")
    config = run.config.replace(data=data) if data else run.config
    out = Path(out) if out else run.path
    out.mkdir(parents=True, exist_ok=True)

    figures = {"training curves": training_curves(metrics["history"], config.metric)} if metrics["history"] else {}
    top, bottom = [("Final metrics", metrics_table(metrics))], []  # sections above and below the figures
    if not metrics["history"]:
        top.append(
            (
                "Training",
                f"<p>No training curves: the run has no training epochs ({html.escape(metrics['source'])}).</p>",
            )
        )
    if isinstance(run.model, IntentModel):
        dataset = load_dataset(config)
        run.check_data(dataset)
        representations, intents, _ = user_intents(run.model, dataset, config.eval_batch_size)
        centres = run.model.centres.detach().float().cpu().numpy()
        figures["intent map"] = intent_map(representations, intents, centres, sample, config.seed)
        figures["intent sizes"] = intent_sizes(intents, len(centres))
        groups, table = activity_analysis(dataset.lengths, intents)
        bottom.append(("Intents by user activity", table))
        summary = {
            "users": dataset.n_users,
            "intents": len(centres),
            "intents used": int(len(np.unique(intents))),
            "largest intent's share": f"{np.bincount(intents).max() / len(intents):.1%}",
            "activity groups (interactions)": ", ".join(f"{name} {low}-{high}" for name, low, high in groups),
        }
        top.append(("Intents", _table([[k, v] for k, v in summary.items()])))
    else:
        top.append(("Intents", f"<p>{html.escape(config.model)} learns no intents: no intent map.</p>"))

    images = []
    for name, png in figures.items():
        (out / f"report-{name.replace(' ', '-')}.png").write_bytes(png)
        images.append(
            f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f"<figcaption>{name}</figcaption></figure>"
        )
    settings = _table([[k, v] for k, v in config.to_dict().items()])
    page = PAGE.format(
        title=html.escape(f"{config.model} on {config.data_name}"),
        top=_sections(top),
        images="\n".join(images),
        bottom=_sections(bottom),
        settings=settings,
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def training_curves(history: list[dict[str, Any]], metric: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, (losses, valid) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [h["epoch"] for h in history]
    losses.plot(epochs, [h["loss"] for h in history], label="loss", color="black", linewidth=2)
    for term in dict.fromkeys(name for h in history for name in h.get("terms", {})):
        losses.plot(epochs, [h.get("terms", {}).get(term, np.nan) for h in history], label=term)
    losses.set(xlabel="epoch", ylabel="training loss (weighted terms)", title="training loss")
    names = list(
        dict.fromkeys(
            name for h in history for name in h.get("valid", {metric: None}) if name.split("@")[0] in ("HR", "NDCG")
        )
    )
    for name in names:
        valid.plot(epochs, [h.get("valid", {metric: h.get(metric)}).get(name, np.nan) for h in history], label=name)
    valid.set(xlabel="epoch", ylabel="validation", title="validation metrics")
    for axis in (losses, valid):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return _png(fig)


def intent_map(representations: np.ndarray, intents: np.ndarray, centres: np.ndarray, sample: int, seed: int) -> bytes:
    """t-SNE of a sample of users and the centres, fitted together (t-SNE has no transform)."""
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(intents), size=min(sample, len(intents)), replace=False)
    used = np.unique(intents)  # centres nobody is assigned to are left out of the map
    points = np.concatenate([representations[chosen], centres[used]])
    perplexity = min(30.0, (len(points) - 1) / 3)
    xy = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(points)
    users, marks = xy[: len(chosen)], xy[len(chosen) :]
    largest = np.argsort(-np.bincount(intents))[:COLOURED_INTENTS]
    fig, axis = plt.subplots(figsize=(7.5, 6.5))
    others = ~np.isin(intents[chosen], largest)
    axis.scatter(*users[others].T, s=6, color="lightgrey", label="other intents")
    for rank, intent in enumerate(largest):
        mine = intents[chosen] == intent
        if mine.any():
            axis.scatter(*users[mine].T, s=6, color=plt.cm.tab10(rank), label=f"intent {intent}")
    axis.scatter(*marks.T, marker="x", s=40, color="black", label="centres")
    axis.set(title=f"users' intent representations (t-SNE, {len(chosen):,} users)", xticks=[], yticks=[])
    axis.legend(fontsize=7, markerscale=2, loc="best")
    return _png(fig)


def intent_sizes(intents: np.ndarray, n_intents: int) -> bytes:
    import matplotlib.pyplot as plt

    sizes = np.sort(np.bincount(intents, minlength=n_intents))[::-1]
    fig, axis = plt.subplots(figsize=(7.5, 3.5))
    axis.bar(np.arange(n_intents), sizes, width=1.0)
    axis.set(xlabel="intents, largest first", ylabel="users", title="intent sizes", yscale="log")
    return _png(fig)


def activity_analysis(lengths: np.ndarray, intents: np.ndarray) -> tuple[list[tuple[str, int, int]], str]:
    """Quartiles of the number of interactions -> (group, fewest, most) and an HTML table of each group's
    size and its top and bottom three intents by share (bottom among the intents anyone is in)."""
    bounds = np.quantile(lengths, [0.25, 0.5, 0.75])
    group = np.searchsorted(bounds, lengths, side="left")  # ties at a bound go to the lower group
    used = np.unique(intents)
    groups, rows = [], []
    for g, name in enumerate(ACTIVITY_GROUPS):
        members = group == g
        if not members.any():
            continue
        groups.append((name, int(lengths[members].min()), int(lengths[members].max())))
        share = np.bincount(intents[members], minlength=intents.max() + 1)[used] / members.sum()
        order = np.argsort(-share, kind="stable")
        top = ", ".join(f"{used[i]} ({share[i]:.1%})" for i in order[:3])
        bottom = ", ".join(f"{used[i]} ({share[i]:.1%})" for i in order[::-1][:3])
        rows.append([name, f"{groups[-1][1]}-{groups[-1][2]}", f"{members.sum():,}", top, bottom])
    return groups, _table(rows, ["group", "interactions", "users", "top 3 intents (share)", "bottom 3 intents (share)"])


def metrics_table(metrics: dict[str, Any]) -> str:
    names = list(metrics["test"])
    rows = [["test", *(_number(metrics["test"][n]) for n in names)]]
    if metrics["valid"]:
        rows.insert(0, ["valid (best epoch)", *(_number(metrics["valid"].get(n)) for n in names)])
    chosen = (
        f"Best epoch {metrics['best_epoch']} by {html.escape(metrics['metric'])}; "
        if metrics["best_epoch"] is not None
        else ""
    )
    mode = f"{metrics['sampled_negatives']} sampled negatives" if metrics["sampled_negatives"] else "full ranking"
    note = f"<p>{chosen}{mode}, seen items: {html.escape(metrics['mask_history'])}.</p>"
    return note + _table(rows, ["split", *names])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _sections(sections: list[tuple[str, str]]) -> str:
    return "\n".join(f"<h2>{html.escape(title)}</h2>\n{body}" for title, body in sections)


def _table(rows: list[list[Any]], header: list[str] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 100%; }}
figcaption {{ text-align: center; color: #555; }}
details {{ margin-top: 2em; }}
</style></head>
<body>
<h1>{title}</h1>
{top}
{images}
{bottom}
<details><summary>Settings</summary>{settings}</details>
</body></html>
"""
