"""The fast engine computes the reference's function: same losses and gradients on a fixed batch when
dropout is off (dropout and the PCL re-encoding are the only places the two engines draw differently).
With padding_outputs=zero (and for SASRec and BERT4Rec, whose losses read item positions only) the fast
engine encodes rows grouped by span, compares views through a banded Gram matrix and looks up centres
at item positions only; the reference engine computes every position and zeroes the padding outputs."""

import itertools
import random

import pytest
import torch

from elcrec import Config
from elcrec.data import train_set
from elcrec.models import Batch, build_model
from elcrec.models.contrastive import Gram, gram
from elcrec.models.transformer import TransformerEncoder, cheap_dropout, span_groups, started

OPTIONS = [
    dict(model="cl4srec"),
    dict(model="iclrec"),
    dict(model="elcrec", intent_fusion="shift"),
    dict(model="elcrec", intent_fusion="concat", num_layers=2),
    dict(model="elcrec", pooling="items"),
    dict(model="sasrec"),
    dict(model="bert4rec"),
    dict(model="cl4srec", padding_outputs="zero"),
    dict(model="iclrec", padding_outputs="zero"),
    dict(model="elcrec", intent_fusion="shift", padding_outputs="zero"),
    dict(model="elcrec", intent_fusion="concat", num_layers=2, padding_outputs="zero"),
]


def loss_and_grads(data, engine, options):
    torch.manual_seed(0)
    config = Config(
        hidden_size=16,
        num_clusters=4,
        max_len=20,
        kmeans_restarts=1,
        dropout=0.0,
        attn_dropout=0.0,
        engine=engine,
        **options,
    )
    model = build_model(config, data.n_items)
    train = train_set(data, config.max_len)
    model.prepare(train)
    model.start_epoch(train)
    model.train()
    targets = torch.from_numpy(train.targets[:64])
    batch = Batch(
        inputs=torch.from_numpy(train.inputs[:64]),
        targets=targets,
        rows=torch.arange(64),
        negatives=torch.randint(1, data.n_items + 1, targets.shape),
    )
    torch.manual_seed(1)  # same augmented views for both engines
    loss = model.loss(batch)
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("options", OPTIONS)
def test_fast_and_reference_engines_agree_without_dropout(tiny_data, options, float64):
    fast, fast_grads = loss_and_grads(tiny_data, "fast", options)
    reference, reference_grads = loss_and_grads(tiny_data, "reference", options)
    assert torch.allclose(fast, reference, rtol=1e-10, atol=1e-12), (fast, reference)
    assert fast_grads.keys() == reference_grads.keys()
    for name, grad in fast_grads.items():
        assert torch.allclose(grad, reference_grads[name], rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.7])
def test_cheap_dropout_keeps_the_expectation(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_003, requires_grad=True)
    out = cheap_dropout(x, p)
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - p) < 4 * (p * (1 - p) / x.numel()) ** 0.5 + 1 / 65536
    assert torch.allclose(out[out != 0], torch.full((1,), 1 / (1 - p)))
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # gradient = mask / (1 - p)
    assert not torch.equal(cheap_dropout(x, p), out)  # fresh mask every call


@pytest.mark.parametrize("causal", [True, False])
def test_last_only_matches_the_full_output(causal, float64):
    torch.manual_seed(0)
    encoder = TransformerEncoder(30, hidden_size=16, num_layers=2, num_heads=2, max_len=10, causal=causal).eval()
    inputs = torch.randint(1, 31, (5, 10))
    inputs[0, :7] = 0
    inputs[1, :9] = 0
    assert torch.allclose(encoder(inputs, last_only=True), encoder(inputs)[:, -1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [True, False])
def test_forward_by_span_is_forward_from_the_first_item_on(causal, float64):
    torch.manual_seed(0)
    encoder = TransformerEncoder(30, hidden_size=16, num_layers=2, num_heads=2, max_len=12, causal=causal).eval()
    inputs = torch.randint(1, 31, (40, 12))
    for row, span in enumerate(torch.randint(0, 13, (40,)).tolist()):
        inputs[row, : 12 - span] = 0
    inputs[:5, -4] = 0  # masked items inside a row: encoded as in forward
    out = encoder.forward_by_span(inputs)
    begun = started(inputs)
    assert torch.allclose(out[begun], encoder(inputs)[begun], rtol=1e-12, atol=1e-12)
    assert not out[~begun].any()


def test_span_groups_is_the_cheapest_grouping():
    rng = random.Random(0)
    for _ in range(30):
        spans = sorted(rng.choice([0, 1, 2, 3, 5, 8, 20, 50]) for _ in range(rng.randint(1, 12)))
        groups = span_groups(spans, group_cost=10)
        assert sum(size for size, _ in groups) == len(spans)
        start = 0
        for size, width in groups:  # consecutive, each as wide as its widest row
            assert width == max(spans[start + size - 1], 1)
            start += size

        def cost(cuts, spans=spans):
            bounds = [0, *cuts, len(spans)]
            return sum((b - a) * max(spans[b - 1], 1) + 10 for a, b in zip(bounds, bounds[1:]))

        brute = min(cost(cuts) for r in range(len(spans)) for cuts in itertools.combinations(range(1, len(spans)), r))
        assert sum(size * width + 10 for size, width in groups) == brute


def test_banded_gram_is_the_gram_of_the_flattened_rows():
    torch.manual_seed(0)
    spans = torch.tensor([0, 1, 1, 2, 3, 5, 5, 7, 9, 10] * 3)
    rows = torch.randn(len(spans), 10, 4).masked_fill((torch.arange(10) < 10 - spans[:, None])[..., None], 0.0)
    rows = rows.double().requires_grad_()
    weights = torch.randn(len(spans), len(spans), dtype=torch.double)
    banded = gram(rows, spans)
    (banded * weights).sum().backward()
    banded_grad, rows.grad = rows.grad, None
    flat = rows.flatten(1)
    dense = flat @ flat.T
    assert torch.allclose(gram(rows), dense)
    (dense * weights).sum().backward()
    assert torch.allclose(banded, dense)
    assert torch.allclose(banded_grad, rows.grad)
    assert torch.autograd.gradcheck(
        lambda r: Gram.apply(r, [(5, 0, 2), (3, 2, 4)]), rows[:5, :4].detach().clone().requires_grad_()
    )


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("padding_outputs", ["encoded", "zero"])
def test_mixed_precision_step(tiny_data, engine, padding_outputs, tmp_path):
    """amp=bf16 autocasts the loss and still trains."""
    from elcrec.training import train

    config = Config(
        model="elcrec",
        hidden_size=16,
        num_clusters=4,
        max_len=20,
        kmeans_restarts=1,
        epochs=1,
        engine=engine,
        amp="bf16",
        device="cpu",
        output_dir=str(tmp_path),
        seed=3,
        padding_outputs=padding_outputs,
    )
    result = train(config, data=tiny_data, progress=False)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result["history"])


@pytest.mark.parametrize("native", [True, False])
def test_mixed_precision_on_a_cpu_without_bf16_warns(tiny_data, tmp_path, bf16_instructions, native):
    """Autocast on a CPU that emulates bf16 is usually slower than float32: the run says so."""
    from elcrec.training import train

    bf16_instructions(native)
    config = Config(
        model="sasrec", hidden_size=16, max_len=20, epochs=1, amp="bf16", device="cpu", output_dir=str(tmp_path), seed=3
    )
    train(config, data=tiny_data, progress=False)
    assert ("warning: amp=bf16 on a CPU without bf16 instructions" in (tmp_path / "train.log").read_text()) != native


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_takes_bf16_only_where_the_cpu_computes_it(tiny_data, tmp_path, bf16_instructions, native):
    """amp=auto, the fast recipe's, trains as amp=bf16 on a CPU with bf16 instructions and as amp=none on one
    that would emulate them (many times slower than float32), without a warning; its session records which."""
    from elcrec.training import train

    bf16_instructions(native)
    settings = dict(model="elcrec", hidden_size=16, num_clusters=4, kmeans_restarts=1, max_len=20, epochs=2, seed=3)
    losses, sessions = {}, {}
    for amp in ("auto", "bf16", "none"):
        config = Config(amp=amp, device="cpu", output_dir=str(tmp_path / amp), **settings)
        result = train(config, data=tiny_data, progress=False)
        losses[amp], sessions[amp] = [h["loss"] for h in result["history"]], result["sessions"]
    taken, other = ("bf16", "none") if native else ("none", "bf16")
    assert losses["auto"] == losses[taken] != losses[other]
    assert [session["amp"] for session in sessions["auto"]] == [taken]
    log = (tmp_path / "auto" / "train.log").read_text()
    assert f"amp=auto: {taken}" in log and "without bf16 instructions" not in log
    assert Config(recipe="fast").amp == "auto"


def test_a_resumed_amp_auto_run_says_when_it_changes_precision(tiny_data, tmp_path, bf16_instructions):
    """amp=auto resolves on each resume: on a CPU of the other kind the run continues in another precision, which
    it says, as it does for other threads or another device."""
    from elcrec.training import train

    settings = dict(model="sasrec", hidden_size=16, max_len=20, amp="auto", device="cpu", seed=3)
    bf16_instructions(True)
    train(Config(epochs=1, output_dir=str(tmp_path), **settings), data=tiny_data, progress=False)
    train(Config(epochs=2, output_dir=str(tmp_path), **settings), data=tiny_data, progress=False, resume=True)
    assert "warning: the state was saved training in amp" not in (tmp_path / "train.log").read_text()
    bf16_instructions(False)
    result = train(Config(epochs=3, output_dir=str(tmp_path), **settings), data=tiny_data, progress=False, resume=True)
    assert "saved training in amp bf16, amp=auto trains in none here" in (tmp_path / "train.log").read_text()
    assert [session["amp"] for session in result["sessions"]] == ["bf16", "bf16", "none"]


def test_similarities_and_centre_distances_stay_float32_under_autocast():
    """Under amp the encoder's matmuls run in bf16, but the contrastive similarities (flattened outputs reach
    hundreds, bf16 rounds them by about 0.5) and the nearest-centre search are computed in float32."""
    from elcrec.models.contrastive import nce
    from elcrec.models.intent import nearest_centre, squared_distances

    torch.manual_seed(0)
    a, b = torch.randn(16, 20, 16) * 3, torch.randn(16, 20, 16) * 3
    centres = torch.linalg.qr(torch.randn(32, 32)).Q  # orthonormal: others are far from a pair's midpoint
    x = (centres[:-1] + centres[1:]) / 2 + 1e-4 * (centres[1:] - centres[:-1])  # a hair nearer the next centre
    expected = nce(a, b), squared_distances(x, centres)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(nce(a, b), expected[0])
        assert torch.equal(nearest_centre(x, centres), torch.arange(1, 32))
        distances = squared_distances(x, centres)
    assert distances.dtype == torch.float32 and torch.equal(distances, expected[1])


def test_contrastive_gradient_matmul_runs_in_amp_precision():
    """Under amp the similarities stay float32 (above), but the Gram matrix's gradient matmul, as large as its
    forward on flattened views, runs in bf16 as autocast runs every other matmul's backward; the gradient stays
    within bf16 rounding of the float32 one."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from elcrec.models.contrastive import nce

    class MatmulLog(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.mm.default:
                self.seen.append((tuple(args[0].shape), tuple(args[1].shape), args[0].dtype, args[1].dtype))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    a, b = (torch.randn(16, 20, 16).mul_(0.3).requires_grad_() for _ in range(2))
    nce(a, b).backward()
    expected, a.grad, b.grad = torch.cat([a.grad, b.grad]), None, None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nce(a, b)
    with MatmulLog() as log:
        loss.backward()
    assert ((32, 32), (32, 320), torch.bfloat16, torch.bfloat16) in log.seen
    grad = torch.cat([a.grad, b.grad])
    assert grad.dtype == torch.float32
    assert torch.allclose(grad, expected, rtol=0, atol=2 * torch.finfo(torch.bfloat16).eps * expected.abs().max())
    assert not torch.equal(grad, expected)


def test_row_argmin_is_torch_argmin_with_first_ties():
    """The nearest-centre search's argmin (numpy's on CPU) returns torch's indices: each row's first minimum,
    for ties, strided rows and rows that require a gradient."""
    from elcrec.models.clustering import row_argmin

    torch.manual_seed(0)
    m = torch.randint(0, 4, (500, 64)).float()  # many ties within each row
    assert torch.equal(row_argmin(m), m.argmin(1))
    assert torch.equal(row_argmin(m.T), m.T.argmin(1))
    grad = torch.randn(300, 256, dtype=torch.float64, requires_grad=True)
    assert torch.equal(row_argmin(grad), grad.argmin(1)) and row_argmin(grad).dtype == torch.int64
