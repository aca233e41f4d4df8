"""`elcrec report RUN`: one self-contained HTML page about a run (figures embedded; the PNGs are also
written beside it), as the paper shows what was learned:

- training curves: the loss and its named terms, and the validation metrics, per epoch;
- the final metrics: best epoch's validation and the test split;
- for intent models (ICLRec, ELCRec): a t-SNE map of a sample of users' intent representations,
  coloured by intent (the ten largest; the rest grey) with the centres marked; the intent-size
  distribution; and the activity analysis: users split by number of interactions into quartiles
  (new, low, medium, high activity) and, per group, the share of each intent, its top and bottom three.

"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from .evaluation.intents import ACTIVITY_GROUPS, activity_groups, intent_profiles, user_intents
from .models.intent import IntentModel
from .runs import METRICS_FILE, REPORT_FIGURE, REPORT_FILE, RunError, atomic_write, load_run

COLOURED_INTENTS = 10
PROFILED_INTENTS = 50  # rows of the intent explorer table (the largest intents)


def write_report(
    run_dir: str | Path, data: str | None = None, out: str | Path | None = None, sample: int = 2000, device: str = "cpu"
) -> Path:
    """Write `report.html` (and its PNGs) into `out` (default: the run folder); returns the page's path."""
    import matplotlib

    matplotlib.use("Agg")

    run = load_run(run_dir, device)
    metrics = run.result()
    if metrics is None and run.path is not None and run.path.is_file():
        raise RunError(f"{run.path} is an exported model, which holds no training record: give its run folder")
    if metrics is None:
        raise RunError(
            f"{run.path / METRICS_FILE} not found: the report needs a finished run's result (training writes it when "
            "it ends; import-reference when given --data FILE)"
        )
    out = Path(out) if out else run.path
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} is a file: the report needs a folder for {REPORT_FILE} and its figures")
    config = run.config.replace(data=data) if data else run.config
    dataset = None
    if data or isinstance(run.model, IntentModel):  # the page names the data: other data is refused
        dataset = run.load_data(data)
        run.check_data(dataset)
    out.mkdir(parents=True, exist_ok=True)

    figures = {"training curves": training_curves(metrics["history"], config.metric)} if metrics["history"] else {}
    top, bottom = [("Final metrics", metrics_table(metrics))], []  # sections above and below the figures
    if not metrics["history"]:
        why = "imported, trained elsewhere" if run.model.trainable else f"{config.model} trains nothing"
        top.append(("Training", f"<p>No training curves: the run has no training epochs ({html.escape(why)}).</p>"))
    if dataset is not None and isinstance(run.model, IntentModel):
        representations, intents, distances = user_intents(run.model, dataset, config.eval_batch_size)
        centres = run.model.centres.detach().float().cpu().numpy()
        figures["intent map"] = intent_map(representations, intents, centres, sample, config.seed)
        figures["intent sizes"] = intent_sizes(intents, len(centres))
        groups, table, shares = activity_analysis(dataset.lengths, intents)
        figures["intents by activity"] = activity_figure(shares)
        profiles = intent_profiles(run.model, dataset, intents, distances, batch_size=config.eval_batch_size)
        bottom.append(("Intents by user activity", table))
        bottom.append(("Intent explorer (largest intents; click a column to sort)", explorer_table(profiles)))
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
        atomic_write(out / REPORT_FIGURE.format(name.replace(" ", "-")), png)
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
    path = out / REPORT_FILE
    atomic_write(path, page.encode())
    return path


def training_curves(history: list[dict[str, Any]], metric: str) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (losses, valid) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [h["epoch"] for h in history]
    marker = "o" if len(epochs) == 1 else None  # a line through one point draws nothing
    losses.plot(epochs, [h["loss"] for h in history], label="loss", color="black", linewidth=2, marker=marker)
    for term in dict.fromkeys(name for h in history for name in h.get("terms", {})):
        losses.plot(epochs, [h.get("terms", {}).get(term, np.nan) for h in history], label=term, marker=marker)
    losses.set(xlabel="epoch", ylabel="training loss (weighted terms)", title="training loss")
    names = list(
        dict.fromkeys(
            name for h in history for name in h.get("valid", {metric: None}) if name.split("@")[0] in ("HR", "NDCG")
        )
    )
    for name in names:
        values = [h.get("valid", {metric: h.get(metric)}).get(name, np.nan) for h in history]
        valid.plot(epochs, values, label=name, marker=marker)
    valid.set(xlabel="epoch", ylabel="validation", title="validation metrics")
    for axis in (losses, valid):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
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


def activity_analysis(
    lengths: np.ndarray, intents: np.ndarray
) -> tuple[list[tuple[str, int, int]], str, dict[str, list[tuple[int, float]]]]:
    """Activity groups (elcrec.evaluation.intents.activity_groups) -> (group, fewest, most interactions), an HTML
    table of each group's size and its top and bottom three intents by share (bottom among the intents anyone
    is in), and those six (intent, share) pairs per group, top first."""
    group = activity_groups(lengths)
    used = np.unique(intents)
    groups, rows, shares = [], [], {}
    for g, name in enumerate(ACTIVITY_GROUPS):
        members = group == g
        if not members.any():
            continue
        groups.append((name, int(lengths[members].min()), int(lengths[members].max())))
        share = np.bincount(intents[members], minlength=intents.max() + 1)[used] / members.sum()
        order = np.argsort(-share, kind="stable")
        chosen = list(order[:3]) + [i for i in order[::-1][:3][::-1] if i not in order[:3]]
        shares[name] = [(int(used[i]), float(share[i])) for i in chosen]
        top = ", ".join(f"{used[i]} ({share[i]:.1%})" for i in order[:3])
        bottom = ", ".join(f"{used[i]} ({share[i]:.1%})" for i in order[::-1][:3])
        rows.append([name, f"{groups[-1][1]}-{groups[-1][2]}", f"{members.sum():,}", top, bottom])
    header = ["group", "interactions", "users", "top 3 intents (share)", "bottom 3 intents (share)"]
    return groups, _table(rows, header), shares


def activity_figure(shares: dict[str, list[tuple[int, float]]]) -> bytes:
    """The paper's activity figure: for each activity group, the shares of its top and bottom three intents."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shares), figsize=(3 * len(shares), 3.2), sharey=True, squeeze=False)
    for axis, (name, pairs) in zip(axes[0], shares.items()):
        colours = ["#d62728"] * min(3, len(pairs)) + ["#6baed6"] * (len(pairs) - min(3, len(pairs)))
        axis.bar([str(intent) for intent, _ in pairs], [share for _, share in pairs], color=colours)
        axis.set(title=f"{name} activity", xlabel="intent (top 3 red, bottom 3 blue)")
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("share of the group's users")
    return _png(fig)


def explorer_table(profiles: list[dict[str, Any]]) -> str:
    """The intent explorer as an HTML table, sortable by clicking a column (a few lines of inline script)."""

    def items(pairs: list[list[Any]]) -> str:
        return " ".join(str(item) for item, _ in pairs[:5])

    rows = [
        [
            p["intent"],
            p["users"],
            f"{p['share']:.2%}",
            f"{p['mean_distance']:.3f}",
            items(p["top_items_by_frequency"]),
            items(p["top_items_by_centre"]),
            " ".join(map(str, p["representative_users"][:3])),
            *(f"{p['activity'][name]:.0%}" for name in ACTIVITY_GROUPS),
        ]
        for p in profiles[:PROFILED_INTENTS]
    ]
    header = [
        "intent",
        "users",
        "share",
        "mean distance",
        "top items (frequency)",
        "top items (near the centre)",
        "representative users",
        *(f"{name} users" for name in ACTIVITY_GROUPS),
    ]
    return _table(rows, header).replace("<table>", '<table class="sortable">', 1) + SORT_SCRIPT


SORT_SCRIPT = """<script>
document.querySelectorAll("table.sortable th").forEach((th, column) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0] || th.closest("table");
  const rows = Array.from(body.querySelectorAll("tr")).filter(row => row.querySelector("td"));
  const value = row => { const text = row.cells[column].textContent; const n = parseFloat(text);
                         return isNaN(n) ? text : n; };
  const ascending = th.dataset.order !== "ascending";
  th.dataset.order = ascending ? "ascending" : "descending";
  rows.sort((a, b) => (value(a) > value(b) ? 1 : value(a) < value(b) ? -1 : 0) * (ascending ? 1 : -1));
  rows.forEach(row => body.appendChild(row));
}));
</script>"""


def metrics_table(metrics: dict[str, Any]) -> str:
    names = list(metrics["test"])
    rows = [["test", *(_number(metrics["test"][n]) for n in names)]]
    if metrics["valid"]:
        rows.insert(0, ["valid (best epoch)", *(_number(metrics["valid"].get(n)) for n in names)])
    best = metrics["best_epoch"]  # None when imported, -1 for a model that trains nothing
    chosen = f"Best epoch {best} by {html.escape(metrics['metric'])}; " if best is not None and best >= 0 else ""
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
table.sortable th {{ cursor: pointer; }}
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
