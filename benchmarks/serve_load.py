"""Load test of `elcrec serve` on loopback, and recall of the faiss index against exact ranking.

    python benchmarks/serve_load.py [--checkpoint RUN] [--requests 2000] [--concurrency 4] [--catalogue 200000]

Starts the server as a subprocess on 127.0.0.1 (a Beauty-sized model: by default the public ELCRec
checkpoint imported from ../shared/reference), replays real Beauty test histories as single requests
(POST /recommend) and as batches of 32 (POST /recommend/batch) from `concurrency` client threads, and
reports throughput, p50/p99 latency and every non-200 answer. Then, on a random catalogue of
`catalogue` items, recall@10 and query time of the HNSW index against the exact matmul.
Writes benchmarks/results/serve-load.md.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from common import DATA_DIR, ROOT, dataset_path, write_markdown

from elcrec import Config
from elcrec.data import eval_set, load_dataset
from elcrec.models import build_model
from elcrec.runs import Run, load_run
from elcrec.runtime import describe_machine
from elcrec.serving import Recommender


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference_run(out: Path) -> Path:
    from elcrec.models.reference import import_reference
    from elcrec.runs import fingerprint, save_run

    data = load_dataset(Config(data=str(dataset_path("beauty"))))
    checkpoint = DATA_DIR.parent / "reference" / "ELCRec-Beauty-1.pt"
    if not checkpoint.is_file():
        raise SystemExit(f"{checkpoint} not found: pass --checkpoint RUN")
    model, config, _ = import_reference(
        checkpoint, data.item_ids, num_heads=2, data=str(dataset_path("beauty")), preset="beauty"
    )
    save_run(out, model, config, data.item_ids, fingerprint(data))
    return out


def load(url: str, bodies: list[dict], path: str, concurrency: int) -> dict:
    latencies, failures, lock = [], [], threading.Lock()
    chunks = [bodies[i::concurrency] for i in range(concurrency)]

    def client(chunk: list[dict]) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for body in chunk:
                started = time.perf_counter()
                response = http.post(path, json=body)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200:
                        failures.append(response.status_code)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(bodies),
        "errors": len(failures),
        "per_s": len(bodies) / wall,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
    }


def index_recall(run: Run, histories: list[list], ef_search: int, k: int = 10) -> dict:
    """recall@k of the faiss index against exact ranking, and the time per single-history query."""
    exact = Recommender(run)
    started = time.perf_counter()
    approximate = Recommender(run, index="faiss", ef_search=ef_search)
    build = time.perf_counter() - started
    timed = {}
    for name, rec in (("exact", exact), ("faiss", approximate)):
        started = time.perf_counter()
        timed[name] = [rec.recommend([h], k)[0]["items"] for h in histories]
        timed[name + "_ms"] = (time.perf_counter() - started) / len(histories) * 1000
    recall = statistics.fmean(len(set(a) & set(e)) / k for a, e in zip(timed["faiss"], timed["exact"]))
    return {
        "recall": recall,
        "exact_ms": timed["exact_ms"],
        "faiss_ms": timed["faiss_ms"],
        "build_s": build,
        "ef": ef_search,
    }


def random_catalogue(n_items: int) -> tuple[Run, list[list]]:
    torch.manual_seed(0)
    config = Config(model="sasrec", num_layers=1)
    run = Run(build_model(config, n_items).eval(), config, np.arange(1, n_items + 1), Path("."))
    return run, np.random.default_rng(0).integers(1, n_items + 1, size=(500, 8)).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="run folder or artefact [default: imported reference]"
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="single requests, 32 or more (then their histories in batches of 32)"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--catalogue", type=int, default=200_000, help="items of the faiss recall test (0 = skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve-load.md")
    args = parser.parse_args()
    if args.requests < 32:
        raise SystemExit(f"--requests {args.requests}: give 32 or more (the batch requests take 32 histories each)")

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or reference_run(Path(tmp) / "run")
        beauty = load_run(checkpoint)
        data = load_dataset(Config(data=str(dataset_path("beauty"))))
        test = eval_set(data, 50, "test")
        rng = np.random.default_rng(0)
        users = rng.integers(0, len(test.inputs), size=args.requests)
        histories = [data.item_ids[row[row > 0] - 1].tolist() for row in test.inputs[users]]
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "elcrec",
                "serve",
                str(checkpoint),
                "--port",
                str(port),
                "--device",
                "cpu",
                "--threads",
                str(args.threads),
            ]
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the server did not start")
            load(url, [{"history": h} for h in histories[:100]], "/recommend", 1)  # warm-up
            alone = load(url, [{"history": h, "k": 10} for h in histories], "/recommend", 1)
            single = load(url, [{"history": h, "k": 10} for h in histories], "/recommend", args.concurrency)
            batches = [{"histories": histories[i : i + 32], "k": 10} for i in range(0, len(histories) - 31, 32)]
            batch = load(url, batches, "/recommend/batch", args.concurrency)
        finally:
            server.terminate()
            server.wait(timeout=30)

    lines = [
        "# Serving load test (loopback)",
        "",
        f"Machine: {describe_machine()}. Command: `python benchmarks/serve_load.py --requests {args.requests} "
        f"--concurrency {args.concurrency} --threads {args.threads} --catalogue {args.catalogue}`.",
        f"Model: {'the public ELCRec Beauty checkpoint' if args.checkpoint is None else args.checkpoint} "
        f"({len(data.item_ids):,} items), exact top-10 with seen items excluded; histories are Beauty test "
        f"histories; {args.concurrency} client threads on the same 2 cores as the server "
        f"(torch threads in the server: {args.threads}).",
        "",
        "| request | requests | errors | requests/s | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in (
        ("single history, 1 client", alone),
        (f"single history, {args.concurrency} clients", single),
        (f"batch of 32, {args.concurrency} clients", batch),
    ):
        lines.append(
            f"| {name} | {result['requests']} | {result['errors']} | {result['per_s']:.0f} | "
            f"{result['p50']:.1f} | {result['p99']:.1f} | {result['max']:.1f} |"
        )
    lines += [
        "",
        "faiss HNSW index (M 32) against exact ranking, single-history queries, top-10 with seen items excluded:",
        "",
        "| catalogue | efSearch | recall@10 | faiss ms/query | exact ms/query | build s |",
        "|---|---|---|---|---|---|",
    ]
    catalogues = [("Beauty (12,101 trained items)", beauty, histories[:500])]
    if args.catalogue:
        catalogues.append((f"{args.catalogue:,} random items (d 64)", *random_catalogue(args.catalogue)))
    for name, run, queries in catalogues:
        for ef in (64, 256, 1024):
            r = index_recall(run, queries, ef)
            lines.append(
                f"| {name} | {ef} | {r['recall']:.3f} | {r['faiss_ms']:.2f} | {r['exact_ms']:.2f} "
                f"| {r['build_s']:.1f} |"
            )
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
