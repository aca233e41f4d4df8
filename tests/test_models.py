import numpy as np
import pytest
import torch

from elcrec import Config, ConfigError
from elcrec.config import CHOICES
from elcrec.models import Batch, SASRec, build_model
from elcrec.models.base import trim_padding


def model(**kwargs):
    torch.manual_seed(0)
    return SASRec(30, Config(hidden_size=16, num_layers=2, num_heads=2, max_len=8, **kwargs)).eval()


def test_future_items_cannot_change_earlier_outputs(float64):
    m = model()
    x = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    base = m.encoder(x)
    for t in range(3, 8):
        changed = x.clone()
        changed[0, t] = 29
        out = m.encoder(changed)
        # item positions before t are untouched (outputs under padding are never read: see transformer.py)
        assert torch.allclose(out[0, 2:t], base[0, 2:t], rtol=1e-12, atol=1e-12)
        assert not torch.allclose(out[0, t:], base[0, t:], atol=1e-4)


def test_padding_never_leaks_into_item_positions(float64):
    m = model()
    x = torch.tensor([[0, 0, 0, 5, 9, 2, 7, 1]])
    base = m.encoder(x)
    with torch.no_grad():
        m.encoder.item_embeddings.weight[0].normal_()  # padding embedding is read but must be masked out
    assert torch.allclose(m.encoder(x)[0, 3:], base[0, 3:], rtol=1e-12, atol=1e-12)
    # dropping leading padding columns keeps the right-aligned positions, so outputs are identical
    assert torch.allclose(m.encoder(trim_padding(x))[0], m.encoder(x)[0, 3:], rtol=1e-12, atol=1e-12)


def test_score_and_encode_shapes_and_contract():
    m = model()
    x = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 0, 3, 9]])
    assert m.encode(x).shape == (2, 16)
    scores = m.score(x)
    assert scores.shape == (2, 30)  # column j is item j + 1; padding is never scored
    assert torch.allclose(scores[:, 4], m.encode(x) @ m.item_table[5])
    with pytest.raises(ValueError, match="max_len"):
        m.encoder(torch.ones(1, 9, dtype=torch.long))


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_losses_train_the_model(loss):
    m = model(loss=loss, dropout=0.0, attn_dropout=0.0).train()
    torch.manual_seed(1)
    inputs = torch.randint(1, 31, (16, 8))
    inputs[:8, :3] = 0
    targets = torch.roll(inputs, -1, dims=1)
    targets[inputs == 0] = 0
    batch = Batch(inputs=inputs, targets=targets, rows=torch.arange(16), negatives=torch.randint(1, 31, (16, 8)))
    optimizer = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        value = m.loss(batch)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0]


def test_bce_ignores_padding_targets():
    m = model()
    batch = Batch(
        inputs=torch.tensor([[0, 0, 0, 0, 0, 0, 1, 2]]),
        targets=torch.tensor([[0, 0, 0, 0, 0, 0, 2, 3]]),
        rows=torch.arange(1),
        negatives=torch.tensor([[9, 9, 9, 9, 9, 9, 4, 5]]),
    )
    value = m.loss(batch)
    batch.negatives[0, :6] = 17  # negatives under padding must not matter
    assert m.loss(batch).item() == pytest.approx(value.item())


def test_build_model_from_config():
    m = build_model(Config(hidden_size=32, num_heads=4, num_layers=1, max_len=20), n_items=11)
    assert (
        isinstance(m, SASRec)
        and len(m.encoder.blocks) == 1
        and m.score(torch.ones(2, 5, dtype=torch.long)).shape == (2, 11)
    )


def test_gru4rec_ignores_padding_and_reads_only_the_past(float64):
    from elcrec.models import GRU4Rec

    torch.manual_seed(0)
    m = GRU4Rec(30, Config(hidden_size=16, num_layers=1, max_len=8)).eval()
    x = torch.tensor([[0, 0, 0, 5, 9, 2, 7, 1], [3, 4, 5, 6, 7, 8, 9, 10]])
    out = m.sequence_output(x)
    assert torch.allclose(m.sequence_output(x[:1, 3:])[0], out[0, 3:], rtol=1e-12, atol=1e-12)  # padding never enters
    changed = x.clone()
    changed[1, 5] = 29
    assert torch.allclose(m.sequence_output(changed)[1, :5], out[1, :5], rtol=1e-12, atol=1e-12)
    assert m.score(x).shape == (2, 30)


def test_bert4rec_is_bidirectional_and_never_ranks_its_mask_token():
    from elcrec.models import BERT4Rec

    torch.manual_seed(0)
    m = BERT4Rec(30, Config(hidden_size=16, max_len=8)).eval()
    x = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    changed = x.clone()
    changed[0, 7] = 29
    assert not torch.allclose(m.encoder(changed)[0, 2:7], m.encoder(x)[0, 2:7], atol=1e-4)
    assert m.score(x).shape == (1, 30) and m.encoder.item_embeddings.num_embeddings == 32
    batch = Batch(inputs=x, targets=torch.tensor([[0, 0, 4, 5, 6, 7, 8, 9]]), rows=torch.arange(1))
    m.train()
    assert torch.isfinite(m.loss(batch))


# a value other than the default for every number READ_BY names (choices and switches take their next value)
OTHER_VALUES = {
    "hidden_size": 8,
    "num_layers": 1,
    "dropout": 0.2,
    "epochs": 3,
    "batch_size": 32,
    "lr": 0.01,
    "warmup_epochs": 1.0,
    "weight_decay": 0.1,
    "patience": 3,
    "num_heads": 4,
    "attn_dropout": 0.1,
    "crop_ratio": 0.5,
    "mask_ratio": 0.3,
    "reorder_ratio": 0.5,
    "cl_weight": 0.5,
    "temperature": 0.5,
    "intent_cl_weight": 0.5,
    "num_clusters": 3,
    "kmeans_iters": 3,
    "kmeans_restarts": 2,
    "trade_off": 0.5,
    "cloze_prob": 0.5,
    "distill_weight": 0.5,
    "distill_neighbours": 3,
    "icc_weight": 0.5,
    "icc_clusters": 3,
    "item_text": "items.npy",
    "user_text": "users.npy",
}


def other_value(name):
    default = getattr(Config(), name)
    if name in CHOICES:
        return next(choice for choice in CHOICES[name] if choice != default)
    if isinstance(default, bool):
        return not default
    assert name in OTHER_VALUES, f"give {name} a value other than its default in OTHER_VALUES"
    return OTHER_VALUES[name]


@pytest.fixture
def item_text(tiny_data, tmp_path):
    """LLM-ESR's item text embeddings for tiny_data: random vectors, one row per item."""
    path = tmp_path / "text.npy"
    np.save(path, np.random.default_rng(0).normal(size=(tiny_data.n_items, 8)).astype(np.float32))
    return str(path)


def model_settings(model, item_text):
    """A tiny model's settings (llmesr reads its item texts)."""
    return {"model": model, "hidden_size": 16, "num_clusters": 4, "max_len": 20, "kmeans_restarts": 1} | (
        {"item_text": item_text} if model == "llmesr" else {}
    )


def what_the_model_computes(data, **settings):
    """The model's loss and gradients on one training batch (dropout and augmentations drawn from the same
    seed) and its scores for the batch's histories, after the model has prepared on the data."""
    from elcrec.data import train_set
    from elcrec.models import create_model

    torch.manual_seed(0)
    config = Config(**settings)
    model = create_model(config, data)
    train = train_set(data, config.max_len)
    model.prepare(train)
    inputs, targets = torch.from_numpy(train.inputs[:32]), torch.from_numpy(train.targets[:32])
    computed = []
    if model.trainable:
        model.start_epoch(train)
        model.train()
        negatives = torch.randint(1, data.n_items + 1, targets.shape, generator=torch.Generator().manual_seed(2))
        torch.manual_seed(1)
        loss = model.loss(Batch(inputs=inputs, targets=targets, rows=torch.arange(32), negatives=negatives))
        loss.backward()
        computed += [loss, *(p.grad for p in model.parameters() if p.grad is not None)]
    with torch.no_grad():
        computed.append(model.eval().score(inputs))
    return computed


CHECKED_MODELS = list(CHOICES["model"])  # a new model is checked once it is a choice
ARCHITECTURE = ("hidden_size", "num_layers", "num_heads", "dropout", "attn_dropout", "loss")


@pytest.mark.parametrize("model", CHECKED_MODELS)
def test_a_setting_the_model_does_not_read_changes_nothing_it_computes(tiny_data, item_text, model):
    """READ_BY's claims, checked: a setting it says this model does not read is logged as ignored, routed to the
    other models of a comparison and left out when runs are compared, so it must change nothing the model
    computes. (The training settings pop does not read act through the training step, which pop never takes.)"""
    settings = model_settings(model, item_text)
    base = what_the_model_computes(tiny_data, **settings)
    checked = []
    for name in Config(model=model).unread():
        try:
            Config(**settings | {name: other_value(name)})
        except ConfigError:  # llmesr's files and variants, padding_outputs: refused for other models, not ignored
            continue
        other = what_the_model_computes(tiny_data, **settings | {name: other_value(name)})
        assert len(other) == len(base) and all(torch.equal(a, b) for a, b in zip(base, other)), name
        checked.append(name)
    assert checked


@pytest.mark.parametrize("model", CHECKED_MODELS)
def test_the_architecture_settings_a_model_reads_change_what_it_computes(tiny_data, item_text, model):
    """The other half of READ_BY's claims: a model listed as reading an architecture setting that it ignores would
    have it routed to it by compare, compared when it resumes, and checked (heads must divide hidden_size)."""
    from elcrec.config import READ_BY

    settings = model_settings(model, item_text)
    base = what_the_model_computes(tiny_data, **settings)
    for name in (name for name in ARCHITECTURE if model in READ_BY[name]):
        other = what_the_model_computes(tiny_data, **settings | {name: other_value(name)})
        assert len(other) != len(base) or not all(torch.equal(a, b) for a, b in zip(base, other)), name


@pytest.mark.parametrize("model", CHECKED_MODELS)
def test_a_model_with_an_item_table_scores_by_it(tiny_data, item_text, model, float64):
    """serve --index faiss searches item_table[1:] with encode(histories): a model that has an item table must
    score by it, or faiss would serve another ranking than the evaluation's."""
    from elcrec.data import train_set
    from elcrec.models import create_model

    net = create_model(Config(**model_settings(model, item_text)), tiny_data)
    net.prepare(train_set(tiny_data, 20))
    if not hasattr(net, "item_table"):
        pytest.skip(f"{model} has no item table: serve refuses index=faiss for it")
    histories = torch.tensor([[0, 0, 3, 7, 9], [4, 8, 15, 16, 23]])
    with torch.no_grad():
        torch.testing.assert_close(net.eval().score(histories), net.encode(histories) @ net.item_table[1:].T)
