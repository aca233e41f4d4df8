"""Multi-process training (torch.distributed, gloo on CPU): the sharded losses give the single-process
gradient, torchrun runs match a single process, a distributed run resumes exactly, and an error in one
process ends the run."""

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from elcrec import Config
from elcrec.data import make_synthetic, train_set
from elcrec.distributed import LossModule, gather_objects, shard
from elcrec.models import LLMESR, Batch, bert4rec, build_model
from elcrec.models.contrastive import CL4SRec
from elcrec.training.step import Step

WORLD = 2
MODELS = {  # dropout off: what remains random is drawn identically in both setups
    "sasrec": {},
    "gru4rec": {},
    "bert4rec": {},
    "cl4srec": {},
    "iclrec": {},
    "elcrec": {"intent_fusion": "shift"},
    "elcrec-concat": {"intent_fusion": "concat", "pooling": "items"},
    "elcrec-centred": {"intent_centering": True, "pooling": "items"},  # standardised by the global batch
    "llmesr": {"cross_attention": True},
    "llmesr-icc": {"icc": "kmeans", "icc_clusters": 4},  # the mean over the global batch's input items
    "llmesr-icc-targets": {"icc": "kmeans", "icc_clusters": 4, "icc_items": "targets", "icc_centres": "learned"},
}


def test_the_sharded_gradient_check_covers_every_trained_model():
    from elcrec.config import READ_BY

    assert {name.partition("-")[0] for name in MODELS} == set(READ_BY["lr"])  # a new model is added to MODELS


def fixed_cloze(batch, prob, maskable=None):
    """BERT4Rec's Cloze masks as a function of the global rows, not of each process's random draws."""
    sequence = torch.cat([batch.inputs[:, 1:], batch.targets[:, -1:]], 1)
    masked = ((batch.rows[:, None] + torch.arange(sequence.shape[1])) % 3 == 0) & (sequence > 0)
    masked[:, -1] |= ~masked.any(1)
    return sequence, masked


def fixed_views(self, inputs):
    """Two deterministic, different views instead of random augmentations."""
    masked = inputs.masked_fill(torch.arange(inputs.shape[1]) % 2 == 0, 0)
    return torch.cat([masked, inputs.roll(1, dims=1)])


def gradients(name: str) -> dict:
    """Gradients of one step on a fixed batch of 8, with this process's shard under torch.distributed."""
    data = make_synthetic(n_users=200, n_items=50, n_intents=4, seed=3)
    sequences = train_set(data, 12)
    config = Config(
        model=name.partition("-")[0],
        hidden_size=16,
        num_layers=1,
        max_len=12,
        num_clusters=4,
        kmeans_restarts=1,
        dropout=0.0,
        attn_dropout=0.0,
        device="cpu",
        **MODELS[name],
    )
    torch.manual_seed(0)
    if config.model == "llmesr":
        model = LLMESR(data.n_items, config, text_dim=8)
        with torch.no_grad():
            model.text[1:] = torch.randn(data.n_items, 8, generator=torch.Generator().manual_seed(2))
    else:
        model = build_model(config, data.n_items)
    model.prepare(sequences)
    model.start_epoch(sequences)
    pooled = model.pooled(sequences.inputs) if hasattr(model, "pooled") else None  # None off rank 0
    pooled = None if pooled is None else torch.from_numpy(pooled)
    with torch.no_grad():  # fixed centres: k-means itself is not under test here
        for buffer in ("cluster_centers", "centroids", "unit_centroids"):
            if hasattr(model, buffer):
                getattr(model, buffer).copy_(torch.nn.functional.normalize(torch.randn(4, 16), dim=1))
    rows = torch.arange(8)
    negatives = torch.randint(1, data.n_items + 1, (8, 12), generator=torch.Generator().manual_seed(1))
    batch = Batch(
        inputs=torch.from_numpy(sequences.inputs)[shard(rows)],
        targets=torch.from_numpy(sequences.targets)[shard(rows)],
        negatives=shard(negatives),
        rows=shard(rows),
    )
    loss_terms = DistributedDataParallel(LossModule(model)) if dist.is_initialized() else model.loss_terms
    sum(loss_terms(batch).values()).backward()
    return {"grads": {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}, "pooled": pooled}


def _worker(rank: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # as the single process of the test (see the float64 fixture)
    CL4SRec.views = fixed_views
    bert4rec.cloze = fixed_cloze
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {name: gradients(name) for name in MODELS}
        centres = gather_objects(results["elcrec"]["grads"]["cluster_centers"])
        if rank == 0:
            torch.save({"results": results, "centre_grads_by_rank": centres}, out_file)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_sharded_losses_give_the_single_process_gradient(tmp_path, monkeypatch, float64):
    """Per-target means over the global batch, NT-Xent negatives gathered from every process, equal
    shards: DDP's averaged gradient must equal the single-process gradient on the whole batch (in float64:
    the two sum in different orders)."""
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path / "out.pt")), nprocs=WORLD)
    distributed = torch.load(tmp_path / "out.pt", weights_only=True)
    monkeypatch.setattr(CL4SRec, "views", fixed_views)
    monkeypatch.setattr(bert4rec, "cloze", fixed_cloze)
    for name in MODELS:
        single, sharded = gradients(name), distributed["results"][name]
        assert single["grads"].keys() == sharded["grads"].keys(), name
        for key, grad in single["grads"].items():
            torch.testing.assert_close(sharded["grads"][key], grad, rtol=1e-9, atol=1e-12, msg=f"{name} {key}")
        if single["pooled"] is not None:  # sharded encoding, gathered in order on rank 0
            torch.testing.assert_close(sharded["pooled"], single["pooled"], rtol=1e-9, atol=1e-12)
    first, second = distributed["centre_grads_by_rank"]
    assert torch.equal(first, second)  # gradients all-reduced: every process takes the same step


def _buffers_worker(rank: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        data = make_synthetic(n_users=200, n_items=50, n_intents=4, seed=3)
        sequences = train_set(data, 12)
        config = Config(model="llmesr", hidden_size=16, num_layers=1, max_len=12, device="cpu")
        model = LLMESR(data.n_items, config, text_dim=8)
        model.prepare(sequences)
        model.start_epoch(sequences)
        step = Step(model, config, torch.device("cpu"))
        with torch.no_grad():
            model.text.fill_(rank)  # a probe: in training the frozen table is the same in every process
        rows = shard(torch.arange(8))
        targets = torch.from_numpy(sequences.targets)[rows]
        step(Batch(torch.from_numpy(sequences.inputs)[rows], targets, rows, negatives=targets % data.n_items + 1))
        after_step = model.text.mean().item()
        step.sync_buffers()
        found = gather_objects((after_step, model.text.mean().item()))
        if rank == 0:
            torch.save(found, out_file)
        dist.barrier()  # gloo aborts a process whose peer left the group first
    finally:
        dist.destroy_process_group()


def test_a_step_leaves_buffers_to_each_process_until_they_are_synced(tmp_path):
    """DistributedDataParallel broadcast every buffer before every step: LLM-ESR's frozen text table (74 MB
    on Beauty at D = 1536) every step. Buffers are synced after each epoch (sync_buffers) instead."""
    mp.spawn(_buffers_worker, args=(str(tmp_path / "init"), str(tmp_path / "out.pt")), nprocs=WORLD)
    found = torch.load(tmp_path / "out.pt", weights_only=True)
    assert found == [(0.0, 0.0), (1.0, 0.0)]  # (after a step, after sync_buffers) by rank


def _amp_worker(rank: int, init_file: str, out_file: str, native_by_rank: list[bool]) -> None:
    from elcrec.training.step import amp_name, autocast_dtype

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # as the bf16_instructions fixture
        setattr(torch.cpu, name, lambda: native_by_rank[rank])
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        taken = gather_objects(amp_name(autocast_dtype("auto", torch.device("cpu"))))
        if rank == 0:
            torch.save(taken, out_file)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("native_by_rank", "taken"), [([True, False], "none"), ([True, True], "bf16")])
def test_amp_auto_takes_one_precision_for_every_process(tmp_path, native_by_rank, taken):
    """amp=auto is resolved by each process on its own device: processes on CPUs of different kinds would train
    in different precisions (and the run would record rank 0's). bf16 only where every process computes it."""
    mp.spawn(_amp_worker, args=(str(tmp_path / "init"), str(tmp_path / "out.pt"), native_by_rank), nprocs=WORLD)
    assert torch.load(tmp_path / "out.pt", weights_only=True) == [taken] * WORLD


TINY = [
    "--data",
    "synthetic",
    "--synthetic-users",
    "600",
    "--synthetic-items",
    "120",
    "--hidden-size",
    "16",
    "--num-layers",
    "1",
    "--max-len",
    "20",
    "--batch-size",
    "64",
    "--patience",
    "0",
    "--device",
    "cpu",
    "--seed",
    "7",
    "--num-clusters",
    "8",
    "--kmeans-restarts",
    "1",
]


def launch(args: list[str], processes: int, timeout: float = 300) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)] if processes > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *launcher, "-m", "elcrec", "train", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def run(args: list[str], processes: int) -> str:
    done = launch(args, processes)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr  # the log


def test_torchrun_matches_one_process(tmp_path):
    """SASRec without dropout: the only randomness left (order, negatives) is shared, so two processes on
    halves of each global batch must train the same model as one process (float summation order aside)."""
    args = [*TINY, "--model", "sasrec", "--epochs", "2", "--dropout", "0", "--attn-dropout", "0"]
    run([*args, "--output-dir", str(tmp_path / "one")], 1)
    printed = run([*args, "--output-dir", str(tmp_path / "two")], WORLD)
    assert printed.count("run folder:") == printed.count("best epoch") == 1  # the first process alone prints
    one, two = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two"))
    for split in ("valid", "test"):
        for metric, value in one[split].items():
            # weights equal to rounding still move a target across a cut-off here and there: up to 3 of 600 users
            assert two[split][metric] == pytest.approx(value, abs=3 / 600), (split, metric)
    weights = [torch.load(tmp_path / name / "model.pt", weights_only=True) for name in ("one", "two")]
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=1e-3, atol=1e-4, msg=key)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_torchrun_elcrec_resumes_exactly(tmp_path):
    """Two ELCRec processes with dropout and augmentations: stopped after 2 of 3 epochs and resumed, the
    run (every process's random streams restored) equals an uninterrupted one."""
    args = [*TINY, "--model", "elcrec"]
    run([*args, "--epochs", "3", "--output-dir", str(tmp_path / "whole")], WORLD)
    run([*args, "--epochs", "2", "--output-dir", str(tmp_path / "part")], WORLD)
    config = json.loads((tmp_path / "part" / "config.json").read_text())
    (tmp_path / "part" / "config.json").write_text(json.dumps({**config, "epochs": 3}))  # one more epoch
    run(["--resume", str(tmp_path / "part")], WORLD)
    whole, part = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("whole", "part"))
    assert [h["loss"] for h in part["history"]] == [h["loss"] for h in whole["history"]]
    assert part["test"] == whole["test"] and part["valid"] == whole["valid"]


def test_a_run_resumed_by_more_processes_gives_each_its_own_random_stream(tmp_path):
    """A state saved by one process holds one torch stream: resumed by two, each must draw its own dropout
    masks and views from it (both drew the saved stream's, the same masks for different rows)."""
    args = [*TINY, "--model", "elcrec", "--output-dir", str(tmp_path / "run")]
    run([*args, "--epochs", "1"], 1)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    (tmp_path / "run" / "config.json").write_text(json.dumps({**config, "epochs": 2}))
    run(["--resume", str(tmp_path / "run")], WORLD)
    streams = [
        rng["torch"] for rng in torch.load(tmp_path / "run" / "training_state.pt", weights_only=True)["rng_by_rank"]
    ]
    assert len(streams) == WORLD and not torch.equal(*streams)


def test_no_two_processes_of_runs_of_different_seeds_share_a_random_stream():
    from elcrec.training.trainer import process_seed

    seeds = [process_seed(seed, rank) for seed in range(64) for rank in range(16)]
    assert len(set(seeds)) == len(seeds) and process_seed(5, 0) == 5  # the first process: as in a single one
    assert all(0 <= seed < 2**64 for seed in seeds)  # torch.manual_seed's range


def test_the_first_process_alone_speaks_and_only_train_runs_in_several(tmp_path):
    """Every process printed each warning (the others through Python's last-resort handler); every other command
    ran whole in each process (evaluate printed its table twice, tune trained two trials as one, export wrote its
    file from each)."""
    args = [*TINY, "--model", "sasrec", "--epochs", "1", "--warmup-epochs", "2", "--output-dir", str(tmp_path / "run")]
    assert run(args, WORLD).count("warning: the warm-up") == 1
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "-m", "elcrec"]
    artefact = tmp_path / "model.elcrec.pt"
    for other in (["evaluate", str(tmp_path / "run")], ["export", str(tmp_path / "run"), "--out", str(artefact)]):
        done = subprocess.run([*command, *other], capture_output=True, text=True, timeout=300)
        refused = "only elcrec train runs in several processes" in done.stderr
        assert done.returncode != 0 and refused, done.stderr[-2000:]
    assert not artefact.exists()


def test_an_error_in_one_process_ends_the_run(tmp_path):
    """Rank 0 cannot write its training state (before the first epoch) while rank 1 goes on into the epoch's
    collectives: the run must end with rank 0's error, not wait at a barrier until gloo's 30-minute timeout."""
    (tmp_path / "run" / "training_state.pt").mkdir(parents=True)  # where rank 0 alone writes
    args = [*TINY, "--model", "sasrec", "--epochs", "3", "--output-dir", str(tmp_path / "run")]
    try:
        done = launch(args, WORLD, timeout=120)
    finally:
        end_processes_naming(tmp_path)  # a stalled run's workers (torchrun starts them in sessions of their own)
    assert done.returncode != 0 and "error: [Errno 21] Is a directory" in done.stderr, done.stderr[-3000:]


def end_processes_naming(path) -> None:
    for process in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if str(path).encode() in (process / "cmdline").read_bytes():
                os.kill(int(process.name), signal.SIGKILL)


def test_the_log_holds_the_error_of_whichever_process_failed(tmp_path):
    """Another process than the first fails in its first step: train.log said only that a peer had closed the
    connection, the first process's own error; the cause is now there too, named by its process."""
    script = tmp_path / "fail_on_rank_1.py"
    script.write_text(
        "import os, sys\n"
        "import elcrec.training.trainer as trainer\n"
        "from elcrec.cli.main import app\n"
        "make_batch = trainer.make_batch\n"
        "def failing(*args, **kwargs):\n"
        "    if os.environ['RANK'] == '1':\n"
        "        raise ValueError('the cause, in process 1')\n"
        "    return make_batch(*args, **kwargs)\n"
        "trainer.make_batch = failing\n"
        "app(sys.argv[1:], prog_name='elcrec')\n"
    )
    args = [*TINY, "--model", "sasrec", "--epochs", "1", "--output-dir", str(tmp_path / "run")]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), str(script), "train"]
    try:
        done = subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    finally:
        end_processes_naming(tmp_path)
    assert done.returncode != 0, done.stderr[-3000:]
    logged = (tmp_path / "run" / "train.log").read_text()
    assert "process 1: error: the cause, in process 1" in logged, logged[-3000:]
    assert logged.count("process 1:") == 1  # its errors alone: the first process logs the rest
