"""`elcrec report`: a self-contained page with the curves, metrics and intent analyses, and (where
Chromium is installed) a headless rendering of it that shows the figures."""

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest

from elcrec import Config
from elcrec.report import activity_analysis, write_report
from elcrec.training import train


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    config = Config(
        data="synthetic",
        synthetic_users=400,
        synthetic_items=100,
        model="elcrec",
        hidden_size=16,
        num_clusters=6,
        kmeans_restarts=1,
        max_len=20,
        epochs=2,
        device="cpu",
        output_dir=str(folder),
    )
    train(config, progress=False)
    return write_report(folder, sample=200)


def test_report_is_self_contained(report):
    page = report.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4  # curves, intent map, intent sizes, intents by activity
    for image in images:
        assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from elsewhere
    for text in (
        "Final metrics",
        "NDCG@20",
        "Intents by user activity",
        "top 3 intents",
        "Settings",
        "Intent explorer",
        "top items (near the centre)",
        'class="sortable"',
    ):
        assert text in page
    assert sorted(p.name for p in report.parent.glob("report-*.png")) == [
        "report-intent-map.png",
        "report-intent-sizes.png",
        "report-intents-by-activity.png",
        "report-training-curves.png",
    ]


def test_activity_groups_are_length_quartiles():
    lengths = np.array([5] * 40 + [8] * 20 + [12] * 20 + [30] * 20)
    intents = np.array([0] * 60 + [1] * 40)
    groups, table, shares = activity_analysis(lengths, intents)
    assert groups == [("new", 5, 5), ("low", 8, 8), ("medium", 12, 12), ("high", 30, 30)]
    assert "0 (100.0%)" in table and "1 (100.0%)" in table
    assert shares["new"] == [(0, 1.0), (1, 0.0)] and shares["high"] == [(1, 1.0), (0, 0.0)]


def test_one_epoch_draws_its_points(monkeypatch):
    """A line through a single point draws nothing: a one-epoch run's curves were two empty panels."""
    from elcrec import report as report_module

    drawn = []
    monkeypatch.setattr(report_module, "_png", drawn.append)
    record = {"epoch": 0, "loss": 1.5, "terms": {"rec": 1.0, "cl": 0.5}, "valid": {"HR@10": 0.2, "NDCG@10": 0.1}}
    report_module.training_curves([record], "NDCG@10")
    lines = [line for axis in drawn[0].axes for line in axis.get_lines()]
    assert len(lines) == 5 and all(line.get_marker() not in (None, "", "None") for line in lines)


def test_a_run_without_training_names_why_and_its_data_is_checked(tmp_path):
    """pop trains nothing: its page said "Best epoch -1" and "no training epochs (trained)". A run that reads no
    data for its page still refuses other data, which the page would name as the run's."""
    from elcrec.runs import RunError

    config = Config(data="synthetic", synthetic_users=200, synthetic_items=50, model="pop", device="cpu")
    train(config.replace(output_dir=str(tmp_path / "pop")), progress=False)
    page = write_report(tmp_path / "pop").read_text()
    assert "pop trains nothing" in page and "Best epoch" not in page
    other = tmp_path / "other.txt"
    other.write_text("".join(f"{user} 1 2 3 4 5\n" for user in range(1, 30)))
    with pytest.raises(RunError, match="use the run's own data"):
        write_report(tmp_path / "pop", data=str(other), out=tmp_path / "other-report")
    assert not (tmp_path / "other-report" / "report.html").exists()


needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Chromium not installed (apt-get install chromium)"
)


def chromium(profile, *arguments):
    """Headless Chromium, as root, offline (no background connections to refuse)."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(["chromium", *flags, *arguments], check=True, capture_output=True, text=True, timeout=120)


@needs_chromium
def test_report_renders_in_headless_chromium(report, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    chromium(tmp_path / "profile", "--window-size=1280,1600", f"--screenshot={shot}", report.as_uri())
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1600, 1280)
    # the figures drew: coloured (non-grey) pixels from the curves and the intent map, not broken-image icons
    coloured = (pixels.max(-1) - pixels.min(-1)) > 0.3
    assert coloured.mean() > 0.005


@needs_chromium
def test_the_intent_explorer_sorts_in_the_browser(report, tmp_path):
    """A click on a column header sorts the explorer's rows by it (the page's own script, run by Chromium)."""
    clicked = tmp_path / "clicked.html"
    click = '<script>document.querySelector("table.sortable th:nth-child(2)").click();</script></body>'
    clicked.write_text(report.read_text().replace("</body>", click))
    done = chromium(tmp_path / "profile", "--dump-dom", clicked.as_uri())
    table = done.stdout.split('<table class="sortable">', 1)[1].split("</table>", 1)[0]
    users = [int(row.split("<td>")[2].split("</td>")[0]) for row in table.split("<tr>")[1:] if "<td>" in row]
    assert len(users) > 1 and users == sorted(users)  # ascending after one click (the page lists largest first)
    assert users != sorted(users, reverse=True)
