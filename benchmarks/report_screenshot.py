"""Write a run's report and photograph it in headless Chromium, to look at how the page renders.

    python benchmarks/report_screenshot.py runs/reproduce/beauty/elcrec-seed1 \
        --out benchmarks/results/report-beauty-elcrec.png

Needs matplotlib and Chromium (`apt-get install chromium`). The page stays in the run folder (report.html).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--users", type=int, default=2000, help="users in the t-SNE map")
    parser.add_argument("--height", type=int, default=2600, help="window height in pixels (the page is cut there)")
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        raise SystemExit("chromium not found (apt-get install chromium)")

    from elcrec.report import write_report

    page = write_report(args.run, sample=args.users)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--window-size=1280,{args.height}",
                f"--screenshot={args.out.resolve()}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    print(f"wrote {page} and {args.out}")


if __name__ == "__main__":
    main()
