"""LLM-ESR: two views on one backbone (SASRec, GRU4Rec, BERT4Rec), self-distillation by item or user text,
the item-cluster constraint, checkpoints."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from elcrec import Config
from elcrec.data import make_synthetic, train_set
from elcrec.evaluation.intents import intent_agreement
from elcrec.models import LLMESR, Batch
from elcrec.runs import load_run
from elcrec.training import train

TEXT_DIM = 24


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=200, n_items=60, n_intents=4, seed=3)


def topic_text(data, noise=0.1, seed=0):
    """Text embeddings that carry each item's planted intent: a topic direction plus noise."""
    counts = np.zeros((data.n_items + 1, data.intents.max() + 1), dtype=np.int64)
    np.add.at(counts, (data.items, data.intents), 1)
    intent = counts[1:].argmax(1)
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(intent.max() + 1, TEXT_DIM))
    return (topics[intent] + noise * rng.normal(size=(len(intent), TEXT_DIM))).astype(np.float32), intent


def with_text(config, data, text, user_text=None):
    """An LLM-ESR model with these text embeddings (what LLMESR.create reads from item_text and user_text)."""
    model = LLMESR(data.n_items, config, text.shape[1])
    with torch.no_grad():
        model.text[1 : data.n_items + 1] = torch.from_numpy(text)
    model.user_text = None if user_text is None else torch.from_numpy(user_text)
    return model


def build(data, **options):
    config = Config(model="llmesr", hidden_size=16, max_len=20, dropout=0.0, attn_dropout=0.0, device="cpu", **options)
    torch.manual_seed(0)
    text, intent = topic_text(data)
    model = with_text(config, data, text)
    train = train_set(data, config.max_len)
    model.prepare(train)
    model.start_epoch(train)
    rows = torch.arange(16)
    batch = Batch(
        inputs=torch.from_numpy(train.inputs[:16]),
        targets=torch.from_numpy(train.targets[:16]),
        negatives=torch.randint(1, data.n_items + 1, (16, 20)),
        rows=rows,
    )
    return model, batch, intent


@pytest.mark.parametrize(
    "options, terms",
    [
        ({}, {"rec", "distill"}),
        ({"distill_weight": 0.0, "cross_attention": False}, {"rec"}),
        ({"icc": "kmeans", "icc_clusters": 4}, {"rec", "distill", "icc"}),
        (
            {"icc": "kmeans", "icc_clusters": 4, "icc_centres": "learned", "cross_attention_at": "outputs"},
            {"rec", "distill", "icc"},
        ),
        ({"icc": "hdbscan", "icc_items": "targets", "causal_attention": False}, {"rec", "distill", "icc"}),
        ({"backbone": "gru4rec", "icc": "kmeans", "icc_clusters": 4}, {"rec", "distill", "icc"}),
        ({"backbone": "gru4rec", "gru_positions": "all", "backbone_code": "library"}, {"rec", "distill"}),
        ({"backbone": "bert4rec", "icc": "kmeans", "icc_clusters": 4}, {"rec", "distill", "icc"}),
        ({"backbone": "bert4rec", "distill_at": "mask", "loss": "ce"}, {"rec", "distill"}),
        ({"backbone_code": "library", "cross_attention_at": "outputs"}, {"rec", "distill"}),
        ({"backbone_code": "library", "backbone": "bert4rec"}, {"rec", "distill"}),
    ],
)
def test_terms_train_and_the_views_score_items(data, options, terms):
    model, batch, _ = build(data, **options)
    found = model.loss_terms(batch)
    assert set(found) == terms and all(torch.isfinite(v) for v in found.values())
    sum(found.values()).backward()
    assert model.adapter[0].weight.grad.abs().sum() > 0 and model.id_embeddings.weight.grad.abs().sum() > 0
    if options.get("icc_centres") == "learned":
        assert model.centres.grad.abs().sum() > 0
    if options.get("backbone") == "bert4rec":  # the [MASK] row trains; the item table never scores it
        assert model.id_embeddings.weight.grad[model.mask_token].abs().sum() > 0
    assert model.score(batch.inputs).shape == (16, data.n_items)
    assert model.item_table.shape == (data.n_items + 1, 32)  # [semantic; collaborative]


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_terms_are_finite_under_fp16_autocast(data, backbone):
    """The cross-attention's blocked scores (-1e9) are beyond float16: masked in float32 (fp16 raised on the
    first step, with every backbone)."""
    model, batch, _ = build(data, backbone=backbone)
    with torch.autocast("cpu", dtype=torch.float16):
        found = model.loss_terms(batch)
    assert set(found) == {"rec", "distill"} and all(torch.isfinite(v) for v in found.values())


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_cross_attention_at_the_outputs_reads_histories_shorter_than_max_len(data, backbone):
    """The public backbone pads its inputs to max_len; the output cross-attention's mask was built at the
    inputs' own width, so every history shorter than max_len failed (scoring, serving, validation)."""
    model, batch, _ = build(data, backbone=backbone, cross_attention_at="outputs")
    model.eval()
    with torch.no_grad():
        short = model.sequence_output(batch.inputs[:, -5:])
        padded = model.sequence_output(torch.nn.functional.pad(batch.inputs[:, -5:], (15, 0)))
    torch.testing.assert_close(short, padded[:, -5:])


def test_a_constraint_or_distillation_with_nothing_to_work_on_is_an_error(data):
    """hdbscan that finds no cluster left the item-cluster loss at 0 every step; one training sequence left the
    distillation target a mean over no neighbour (NaN)."""
    config = Config(model="llmesr", hidden_size=16, max_len=20, device="cpu", icc="hdbscan")
    noise = np.random.default_rng(0).normal(size=(data.n_items, TEXT_DIM)).astype(np.float32)
    with pytest.raises(ValueError, match="icc=hdbscan found no cluster among the 60 items"):
        with_text(config, data, noise).prepare(train_set(data, 20))
    with_text(config, data, topic_text(data)[0]).prepare(train_set(data, 20))  # topics: clusters
    alone = train_set(data, 20)
    alone = type(alone)(**{name: value[:1] for name, value in vars(alone).items()})
    model = with_text(config.replace(icc="none"), data, topic_text(data)[0])
    with pytest.raises(ValueError, match="distillation needs 2 or more training sequences"):
        model.prepare(alone)
        model.start_epoch(alone)


def test_fast_text_vectors_are_the_reference_ones(data, float64):
    """engine=fast adapts each distinct token of a batch once, the reference every position: the same vectors
    and the same adapter gradients."""
    found = []
    for engine in ("fast", "reference"):
        model, batch, _ = build(data, engine=engine)
        vectors = model.text_vectors(batch.inputs)
        (vectors * torch.linspace(-1, 1, vectors.numel()).view(vectors.shape)).sum().backward()
        found.append((vectors.detach(), [p.grad for p in model.adapter.parameters()]))
    (fast, fast_grads), (reference, reference_grads) = found
    assert (batch.inputs == 0).any() and len(batch.inputs.unique()) < batch.inputs.numel() / 2
    torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-12)
    for fast_grad, reference_grad in zip(fast_grads, reference_grads):
        torch.testing.assert_close(fast_grad, reference_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_fast_distillation_targets_equal_the_reference_ones_without_dropout(data, backbone, float64):
    """engine=fast reads the neighbours from a table made at the start of the epoch; with the model unchanged
    and no dropout that equals encoding them at the step (engine=reference)."""
    fast, batch, _ = build(data, engine="fast", backbone=backbone)
    reference, _, _ = build(data, engine="reference", backbone=backbone)
    terms = []
    for model in (fast, reference):
        model.train()
        torch.manual_seed(5)  # the same Cloze masks
        terms.append(model.loss_terms(batch))
    torch.testing.assert_close(terms[0]["distill"], terms[1]["distill"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(terms[0]["rec"], terms[1]["rec"], rtol=1e-9, atol=1e-12)


def test_item_clusters_follow_the_items_own_text(data):
    model, _, intent = build(data, icc="kmeans", icc_clusters=4)
    labels = model.item_cluster[1:].numpy()
    assert model.item_cluster[0] == -1
    assert intent_agreement(labels, intent)["NMI"] > 0.9  # label of item i comes from item i's text


def test_collaborative_view_starts_from_pca_of_the_text(data):
    from sklearn.decomposition import PCA

    model, _, _ = build(data)
    text, _ = topic_text(data)
    expected = PCA(16, random_state=1).fit_transform(text)
    np.testing.assert_allclose(model.id_embeddings.weight[1:].detach().numpy(), expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
@pytest.mark.parametrize("code, at", [("public", "embeddings"), ("library", "embeddings"), ("library", "outputs")])
def test_cross_attention_stays_causal(data, backbone, code, at):
    model, batch, _ = build(data, backbone=backbone, backbone_code=code, cross_attention_at=at)
    model.eval()
    inputs = batch.inputs.clone()
    before = model.sequence_output(inputs)
    inputs[:, -1] = 1 + inputs[:, -1] % data.n_items  # change only the newest item
    after = model.sequence_output(inputs)
    items = batch.inputs[:, :-1] > 0  # padding positions read every key, as in the reference backbone
    torch.testing.assert_close(after[:, :-1][items], before[:, :-1][items])


def test_distillation_targets_are_similar_users(data):
    model, _, intent = build(data)
    train = train_set(data, 20)
    text, _ = topic_text(data)

    # neighbours' mean text is closer to the user's own than a random user's is
    def mean_text(inputs):
        present = inputs > 0
        return (text[inputs - 1] * present[..., None]).sum(-2) / present.sum(-1, keepdims=True)

    own = mean_text(train.inputs)
    neighbours = mean_text(model.train_inputs[model.neighbours].numpy()).mean(1)
    cosine = lambda a, b: (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)  # noqa: E731
    assert cosine(own, neighbours).mean() > cosine(own, own[np.random.default_rng(0).permutation(len(own))]).mean()


def test_neighbours_without_user_text_take_memory_for_rows_not_positions():
    """Each user's mean item text, for finding similar users, was taken over an [N, L, D] tensor of every
    position's text (27 GB on Beauty at L = 200, D = 1536): here [2000, 200, 1024] floats, 1.6 GB."""
    script = """
import resource, torch
from elcrec import Config
from elcrec.data import make_synthetic, train_set
from elcrec.models import LLMESR
data = make_synthetic(n_users=2000, n_items=60, n_intents=4, seed=3)
model = LLMESR(data.n_items, Config(model="llmesr", hidden_size=16, max_len=200, device="cpu"), 1024)
torch.nn.init.normal_(model.text)
train = train_set(data, 200)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
found = model._similar_users(train)
assert found.shape == (len(train.inputs), 10)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) < 800  # MB of peak memory it added


@pytest.mark.parametrize("code", ["public", "library"])
def test_bert4rec_backbone_scores_from_a_mask_after_the_history(data, code):
    model, batch, _ = build(data, backbone="bert4rec", backbone_code=code)
    model.eval()
    histories = batch.inputs
    mask = torch.full((16, 1), model.mask_token)
    expected = model.sequence_output(torch.cat([histories[:, 1:], mask], 1))[:, -1] @ model.item_table[1:].T
    full = (histories > 0).all(1)  # [MASK] after a full window: the public code gives it position max_len + 1
    assert 0 < full.sum() < 16
    scores = model.score(histories)
    torch.testing.assert_close(scores[~full], expected[~full])
    assert torch.allclose(scores[full], expected[full]) == (code == "library")
    changed = histories.clone()
    changed[:, -3] = 1 + changed[:, -3] % data.n_items  # bidirectional: an older item changes the user too
    assert not torch.allclose(model.encode(changed), model.encode(histories))


def test_public_cloze_rows_select_mask_and_replace_as_the_public_code():
    """Two rows per user: a cloze_prob share of the maskable items selected, 80% [MASK], 10% a random item,
    10% unchanged, no row forced to have one; then the sequence with only its last item masked."""
    from elcrec.models.llmesr_backbones import cloze_copies

    torch.manual_seed(0)
    sequence = torch.randint(1, 1001, (4000, 50))
    maskable = torch.ones_like(sequence, dtype=torch.bool)
    maskable[:, :5] = False
    tokens, labelled = cloze_copies(sequence, maskable, 0.6, 1001, 1000)
    first, selected = tokens[:4000], labelled[:4000]
    assert not selected[:, :5].any() and abs(selected[:, 5:].float().mean() - 0.6) < 0.005
    mask, same = first[selected] == 1001, first[selected] == sequence[selected]
    assert abs(mask.float().mean() - 0.8) < 0.005
    assert abs(same.float().mean() - 0.1 - 0.1 / 1000) < 0.005  # a random item is the item itself 1/1000 times
    assert (first[~selected] == sequence[~selected]).all()
    assert torch.equal(tokens[4000:, :-1], sequence[:, :-1]) and (tokens[4000:, -1] == 1001).all()
    assert labelled[4000:, -1].all() and not labelled[4000:, :-1].any()
    _, few = cloze_copies(sequence[:, -3:], torch.ones(4000, 3, dtype=torch.bool), 0.1, 1001, 1000)
    assert (~few[:4000].any(1)).sum() > 2000  # 0.9 ** 3 of the rows have none: none is forced


def test_user_text_picks_the_distillation_neighbours(data):
    """With user text, the neighbours are the users with the most similar text, whatever their items."""
    train = train_set(data, 20)
    group = np.arange(data.n_users) % 5
    user_text = np.eye(5, dtype=np.float32)[group] + 0.01 * np.random.default_rng(0).normal(size=(data.n_users, 5))
    config = Config(model="llmesr", hidden_size=16, max_len=20, device="cpu", distill_neighbours=5)
    model = with_text(config, data, topic_text(data)[0], user_text.astype(np.float32))
    model.prepare(train)
    model.start_epoch(train)
    row_group = group[train.users]
    assert (row_group[model.neighbours.numpy()] == row_group[:, None]).all()
    with pytest.raises(ValueError, match="user_text is a setting of llmesr"):
        Config(model="sasrec", user_text="users.npy")


def test_a_trained_run_loads_without_its_text_file(data, tmp_path):
    text, _ = topic_text(data)
    np.save(tmp_path / "text.npy", text)
    np.save(tmp_path / "users.npy", np.random.default_rng(0).normal(size=(data.n_users, 8)).astype(np.float32))
    config = Config(
        model="llmesr",
        item_text=str(tmp_path / "text.npy"),
        user_text=str(tmp_path / "users.npy"),
        backbone="bert4rec",
        icc="kmeans",
        icc_clusters=4,
        hidden_size=16,
        max_len=20,
        epochs=1,
        device="cpu",
        output_dir=str(tmp_path / "run"),
    )
    train(config, data=data, progress=False)
    with pytest.raises(ValueError, match="item_text is a setting of llmesr"):  # not silently ignored
        train(
            config.replace(model="sasrec", backbone="sasrec", output_dir=str(tmp_path / "sasrec")),
            data=data,
            progress=False,
        )
    (tmp_path / "text.npy").unlink()
    run = load_run(tmp_path / "run")
    assert run.model.text.shape[1] == TEXT_DIM  # the width comes from the weights
    torch.testing.assert_close(run.model.text[1:-1], torch.from_numpy(text))  # the last row: [MASK]
    assert run.model.score(torch.from_numpy(train_set(data, 20).inputs[:4])).shape == (4, data.n_items)


def test_without_causal_attention_every_position_reads_the_later_items(data):
    """causal_attention off is the public code: its training positions read their own targets."""
    model, batch, _ = build(data, causal_attention=False)
    model.eval()
    inputs = batch.inputs.clone()
    before = model.sequence_output(inputs)
    inputs[:, -1] = 1 + inputs[:, -1] % data.n_items
    items = batch.inputs[:, :-1] > 0
    assert not torch.allclose(model.sequence_output(inputs)[:, :-1][items], before[:, :-1][items])


def test_a_run_saved_before_the_public_behaviour_loads_as_it_was_trained(data, tmp_path):
    """config.json of a run from before backbone_code and its siblings existed: the run used this library's
    backbone and the cross-attention on its outputs, and loads so (not with today's defaults)."""
    import json

    from elcrec.config import ADDED

    text, _ = topic_text(data)
    np.save(tmp_path / "text.npy", text)
    config = Config(
        model="llmesr",
        item_text=str(tmp_path / "text.npy"),
        hidden_size=16,
        max_len=20,
        epochs=1,
        device="cpu",
        output_dir=str(tmp_path / "run"),
        **ADDED["llmesr"],
    )
    train(config, data=data, progress=False)
    saved = tmp_path / "run" / "config.json"
    values = json.loads(saved.read_text())
    saved.write_text(json.dumps({k: v for k, v in values.items() if k not in ADDED["llmesr"]}))
    run = load_run(tmp_path / "run")
    assert run.config == config and type(run.model.encoder).__name__ == "TransformerEncoder"
