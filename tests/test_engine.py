"""The fast engine computes the reference's function: same losses and gradients on a fixed batch when
dropout is off (dropout and the PCL re-encoding are the only places the two engines draw differently)."""

import pytest
import torch

from elcrec import Config
from elcrec.data import train_set
from elcrec.models import build_model
from elcrec.models.transformer import TransformerEncoder, cheap_dropout

OPTIONS = [dict(model="cl4srec"), dict(model="iclrec"), dict(model="elcrec", intent_fusion="shift"),
           dict(model="elcrec", intent_fusion="concat", num_layers=2), dict(model="elcrec", pooling="items")]


def loss_and_grads(data, engine, options):
    torch.manual_seed(0)
    config = Config(hidden_size=16, num_clusters=4, max_len=20, kmeans_restarts=1, dropout=0.0, attn_dropout=0.0,
                    engine=engine, **options)
    model = build_model(config, data.n_items)
    train = train_set(data, config.max_len)
    model.prepare(train)
    model.start_epoch(train)
    model.train()
    batch = {"inputs": torch.from_numpy(train.inputs[:64]), "targets": torch.from_numpy(train.targets[:64])}
    batch["negatives"] = torch.randint(1, data.n_items + 1, batch["targets"].shape)
    torch.manual_seed(1)  # same augmented views for both engines
    loss = model.loss(batch)
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("options", OPTIONS)
def test_fast_and_reference_engines_agree_without_dropout(tiny_data, options):
    fast, fast_grads = loss_and_grads(tiny_data, "fast", options)
    reference, reference_grads = loss_and_grads(tiny_data, "reference", options)
    assert torch.allclose(fast, reference, rtol=1e-5, atol=1e-6), (fast, reference)
    assert fast_grads.keys() == reference_grads.keys()
    for name, grad in fast_grads.items():
        assert torch.allclose(grad, reference_grads[name], rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("p", [0.1, 0.5, 0.7])
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
def test_last_only_matches_the_full_output(causal):
    torch.manual_seed(0)
    encoder = TransformerEncoder(30, hidden_size=16, num_layers=2, num_heads=2, max_len=10, causal=causal).eval()
    inputs = torch.randint(1, 31, (5, 10))
    inputs[0, :7] = 0
    inputs[1, :9] = 0
    assert torch.allclose(encoder(inputs, last_only=True), encoder(inputs)[:, -1], atol=1e-6)


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_mixed_precision_step(tiny_data, engine, tmp_path):
    """amp=bf16 autocasts the loss (on CPU here, on CUDA in practice) and still trains."""
    from elcrec.training import train

    config = Config(model="elcrec", hidden_size=16, num_clusters=4, max_len=20, kmeans_restarts=1, epochs=1,
                    engine=engine, amp="bf16", device="cpu", output_dir=str(tmp_path), seed=3)
    result = train(config, data=tiny_data, progress=False)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result["history"])
