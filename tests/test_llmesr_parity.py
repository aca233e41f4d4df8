"""Parity with the public LLM-ESR code (Applied-Machine-Learning-Lab/LLM-ESR @ e5dc388) and the ICC extension
(springCozyRock/ICC-LLM-ESR @ c0d4077): each faithful backbone and loss of elcrec's llmesr against a hand-written
reading of the public equations (plain torch ops on the model's weights, nothing of ours called), on one fixed
small batch, in float64. The file:line references are the public code's."""

import math

import pytest
import torch
import torch.nn.functional as F

from elcrec import Config
from elcrec.models import LLMESR, Batch
from elcrec.models.llmesr_backbones import cloze_copies

N_ITEMS, TEXT_DIM, D, L, K = 30, 12, 8, 7, 3
HISTORIES = [  # items[:-2] of five users: short and long, with repeats (the constraint counts them)
    [4, 9, 4],
    [1, 2, 3, 4, 5],
    [7, 7, 8, 12, 30, 29, 28, 27, 26],
    [11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 1, 3],
    [5, 6],
]
NEIGHBOUR_INPUTS = [[3, 2, 1], [9, 8, 7, 6, 5, 4, 3, 2, 1], [10, 20], [16, 17, 18, 19], [2]]  # items[:-3]
NEIGHBOURS = [[1, 2, 3], [0, 4, 2], [3, 1, 0], [2, 4, 1], [0, 1, 3]]


def right_aligned(rows, width=L):
    """The public loaders' layout: the last `width` items, left-padded with 0 (data.py:35-45)."""
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for r, row in enumerate(rows):
        row = row[-width:]
        out[r, width - len(row) :] = torch.tensor(row)
    return out


def public_positions(rows, width=L):
    """data.py:244-253: 1, 2, ... from the oldest item in the window, 0 under padding."""
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for r, row in enumerate(rows):
        n = min(len(row), width)
        out[r, width - n :] = torch.arange(1, n + 1)
    return out


@pytest.fixture
def batch(float64):
    inputs = right_aligned([h[:-1] for h in HISTORIES])  # seq = inter[:-1]
    targets = right_aligned([h[1:] for h in HISTORIES])  # pos[t] = seq[t + 1]
    negatives = torch.randint(1, N_ITEMS + 1, (len(HISTORIES), L), generator=torch.Generator().manual_seed(3))
    return Batch(inputs=inputs, targets=targets, rows=torch.arange(len(HISTORIES)), negatives=negatives * (targets > 0))


def model_of(backbone, **options):
    config = Config(
        model="llmesr",
        backbone=backbone,
        hidden_size=D,
        num_layers=1 if backbone == "gru4rec" else 2,
        num_heads=2,
        max_len=L,
        dropout=0.0,
        attn_dropout=0.0,
        distill_neighbours=K,
        engine="reference",
        device="cpu",
        **options,
    )
    torch.manual_seed(0)
    model = LLMESR(N_ITEMS, config, TEXT_DIM)
    with torch.no_grad():  # every weight away from its initial value (LayerNorm's ones and zeros too)
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
        model.id_embeddings.weight[0] = 0.0  # the padding row, zero in the public table too
        model.text[1 : N_ITEMS + 1] = torch.randn(N_ITEMS, TEXT_DIM)
    model.train_inputs = right_aligned(NEIGHBOUR_INPUTS)
    model.neighbours = torch.tensor(NEIGHBOURS)
    return model


# --- a reading of the public code, by hand


def layer_norm(x, norm):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + 1e-8) * norm.weight + norm.bias


def split_heads(x, heads):
    B, T, d = x.shape
    return x.view(B, T, heads, d // heads).transpose(1, 2)


def merge_heads(x):
    B, H, T, w = x.shape
    return x.transpose(1, 2).reshape(B, T, H * w)


def torch_mha(query, key_value, attention, causal):
    """torch.nn.MultiheadAttention(query, key, value) with the public call's masks: none (SASRec.py:54-55, the
    causal mask commented out), or the causal one we keep by default."""
    d, H = query.shape[-1], attention.num_heads
    w_q, w_k, w_v = attention.in_proj_weight.split(d)
    b_q, b_k, b_v = attention.in_proj_bias.split(d)
    q = split_heads(query @ w_q.T + b_q, H)
    k = split_heads(key_value @ w_k.T + b_k, H)
    v = split_heads(key_value @ w_v.T + b_v, H)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // H)
    if causal:
        T = query.shape[1]
        scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    return merge_heads(torch.softmax(scores, -1) @ v) @ attention.out_proj.weight.T + attention.out_proj.bias


def sasrec_backbone(seqs, log_seqs, encoder, causal=False):
    """SASRecBackbone.forward (SASRec.py:43-65), also BertBackbone.forward (Bert4Rec.py:43-61)."""
    keep = (log_seqs != 0).unsqueeze(-1)
    seqs = seqs * keep
    for i in range(len(encoder.attentions)):
        Q = layer_norm(seqs, encoder.attn_norms[i])
        seqs = Q + torch_mha(Q, seqs, encoder.attentions[i], causal)
        seqs = layer_norm(seqs, encoder.ffn_norms[i])
        ffn = encoder.ffns[i]  # PointWiseFeedForward (utils.py:9-24): conv1, ReLU, conv2, plus its input
        seqs = torch.relu(seqs @ ffn.inner.weight.T + ffn.inner.bias) @ ffn.outer.weight.T + ffn.outer.bias + seqs
        seqs = seqs * keep
    return layer_norm(seqs, encoder.last_norm)


def gru_backbone(seqs, gru):
    """nn.GRU(bias=False) over the whole padded sequence (GRU4Rec.py:15-28), one layer: torch's GRU equations."""
    w_r, w_z, w_n = gru.weight_ih_l0.split(seqs.shape[-1])
    u_r, u_z, u_n = gru.weight_hh_l0.split(seqs.shape[-1])
    h, outputs = torch.zeros_like(seqs[:, 0]), []
    for t in range(seqs.shape[1]):
        x = seqs[:, t]
        r = torch.sigmoid(x @ w_r.T + h @ u_r.T)
        z = torch.sigmoid(x @ w_z.T + h @ u_z.T)
        n = torch.tanh(x @ w_n.T + r * (h @ u_n.T))
        h = (1 - z) * n + z * h
        outputs.append(h)
    return torch.stack(outputs, 1)


def multi_cross_attention(x, y, log_seqs, module, causal=False):
    """Multi_CrossAttention.forward (utils.py:107-133): queries from x, keys and values from y, 2 heads;
    CalculateAttention: masked_fill(padded key, -1e9), then softmax(. / sqrt(head width))."""
    q = split_heads(x @ module.query.weight.T, 2)
    k = split_heads(y @ module.key.weight.T, 2)
    v = split_heads(y @ module.value.weight.T, 2)
    mask = (log_seqs == 0).unsqueeze(1).repeat(1, log_seqs.size(1), 1).unsqueeze(1)
    if causal:  # ours: later keys too; a query before the first item reads the padding up to it
        T = log_seqs.shape[1]
        later = torch.ones(T, T).triu(1).bool()
        mask = (mask & (log_seqs != 0)[:, None, :, None]) | later
    attention = torch.softmax((q @ k.transpose(-1, -2)).masked_fill(mask, -1e9) / math.sqrt(q.shape[-1]), -1)
    return merge_heads(attention @ v) @ module.out.weight.T + module.out.bias


def adapter(model, log_seqs):
    first, second = model.adapter
    return (model.text[log_seqs] @ first.weight.T + first.bias) @ second.weight.T + second.bias


def public_log2feats(model, log_seqs, positions, causal=False):
    """DualLLMSASRec.log2feats and DualLLMBert4Rec.log2feats (DualLLMSRS.py:149-176, :240-266), with
    --use_cross_att; the views concatenated [semantic; collaborative] (the public code's order is
    [collaborative; semantic], as its item vectors: the same scores)."""
    pos = model.encoder.position_embeddings.weight[positions]
    id_seqs = model.id_embeddings.weight[log_seqs] * D**0.5 + pos
    llm_seqs = adapter(model, log_seqs) * D**0.5 + pos
    cross_id_seqs = multi_cross_attention(llm_seqs, id_seqs, log_seqs, model.cross_col, causal)  # llm2id
    cross_llm_seqs = multi_cross_attention(id_seqs, llm_seqs, log_seqs, model.cross_sem, causal)  # id2llm
    id_log_feats = sasrec_backbone(cross_id_seqs, log_seqs, model.encoder, causal)
    llm_log_feats = sasrec_backbone(cross_llm_seqs, log_seqs, model.encoder, causal)
    return torch.cat([llm_log_feats, id_log_feats], -1)


def public_gru_log2feats(model, log_seqs, causal=False):
    """DualLLMGRU4Rec.log2feats (DualLLMSRS.py:68-86): no positions, no scaling, no dropout."""
    id_seqs, llm_seqs = model.id_embeddings.weight[log_seqs], adapter(model, log_seqs)
    cross_id_seqs = multi_cross_attention(llm_seqs, id_seqs, log_seqs, model.cross_col, causal)
    cross_llm_seqs = multi_cross_attention(id_seqs, llm_seqs, log_seqs, model.cross_sem, causal)
    gru = model.encoder.gru
    return torch.cat([gru_backbone(cross_llm_seqs, gru), gru_backbone(cross_id_seqs, gru)], -1)


def item_vectors(model, ids):
    """_get_embedding (DualLLMSRS.py:138-146): [adapter(t_i); e_i], unscaled."""
    return torch.cat([adapter(model, ids), model.id_embeddings.weight[ids]], -1)


def bce(pos_logits, neg_logits):
    """BCEWithLogitsLoss()(pos, 1) + BCEWithLogitsLoss()(neg, 0) (SASRec.py:178-182)."""
    return F.binary_cross_entropy_with_logits(
        pos_logits, torch.ones_like(pos_logits)
    ) + F.binary_cross_entropy_with_logits(neg_logits, torch.zeros_like(neg_logits))


def distillation(model, user_feats, log2feats):
    """LLMESR.py:44-66 with user_sim_func=kd: MSE(u, mean of the detached last outputs of the neighbours'
    items[:-3]), alpha 0.1."""
    sim_seq = right_aligned([NEIGHBOUR_INPUTS[j] for row in NEIGHBOURS for j in row])
    sim_positions = public_positions([NEIGHBOUR_INPUTS[j] for row in NEIGHBOURS for j in row])
    sim = log2feats(sim_seq, sim_positions)[:, -1].detach().view(len(NEIGHBOURS), K, -1).mean(1)
    sim = sim.repeat(len(user_feats) // len(sim), 1)  # BERT4Rec: both training rows of a user share its neighbours
    return 0.1 * ((user_feats - sim) ** 2).mean()


def close(ours, theirs):
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


# --- the tests


@pytest.mark.parametrize("causal", [False, True])
def test_sasrec_loss_is_the_public_one(batch, causal):
    """LLMESR_SASRec.forward: BCE at every position of seq (one negative each) + alpha * distillation; causal
    adds the mask the public code comments out."""
    model = model_of("sasrec", causal_attention=causal)
    terms = model.loss_terms(batch)

    def log2feats(seqs, positions):
        return public_log2feats(model, seqs, positions, causal)

    positions = public_positions([h[:-1] for h in HISTORIES])
    feats = log2feats(batch.inputs, positions)
    at = batch.targets != 0
    pos_logits = (feats * item_vectors(model, batch.targets)).sum(-1)[at]
    neg_logits = (feats * item_vectors(model, batch.negatives)).sum(-1)[at]
    close(terms["rec"], bce(pos_logits, neg_logits))
    close(terms["distill"], distillation(model, log2feats(batch.inputs, positions)[:, -1], log2feats))


def test_sasrec_scores_are_the_public_ones(batch):
    """SASRec.predict (SASRec.py:133-144) at the public width max_len; ours gets the histories trimmed of their
    common padding (as the evaluator passes them) and widens them again."""
    model = model_of("sasrec", causal_attention=False).eval()
    histories = right_aligned(HISTORIES)
    feats = public_log2feats(model, histories, public_positions(HISTORIES))[:, -1]
    expected = feats @ item_vectors(model, torch.arange(1, N_ITEMS + 1)).T
    close(model.score(histories), expected)
    short = [0, 1, 4]  # their first two columns are padding
    close(model.score(histories[short, 2:]), expected[short])


@pytest.mark.parametrize("causal", [False, True])
def test_gru4rec_loss_is_the_public_one(batch, causal):
    """LLMESR_GRU4Rec.forward: GRU4Rec.forward's BCE at the last position only (GRU4Rec.py:64-85) +
    alpha * distillation, with the cross-attention on the raw embeddings."""
    model = model_of("gru4rec", causal_attention=causal)
    terms = model.loss_terms(batch)
    feats = public_gru_log2feats(model, batch.inputs, causal)
    last = feats[:, -1]
    pos_logits = (last * item_vectors(model, batch.targets[:, -1])).sum(-1)
    neg_logits = (last * item_vectors(model, batch.negatives[:, -1])).sum(-1)
    close(terms["rec"], bce(pos_logits, neg_logits))
    close(terms["distill"], distillation(model, last, lambda seqs, _: public_gru_log2feats(model, seqs, causal)))


def test_gru4rec_scores_are_the_public_ones(batch):
    model = model_of("gru4rec", causal_attention=False).eval()
    histories = right_aligned(HISTORIES)
    expected = public_gru_log2feats(model, histories)[:, -1] @ item_vectors(model, torch.arange(1, N_ITEMS + 1)).T
    close(model.score(histories), expected)
    short = [0, 1, 4]  # their first two columns are padding, which the public GRU reads
    close(model.score(histories[short, 2:]), expected[short])


def test_bert4rec_loss_is_the_public_one(batch):
    """LLMESR_Bert4Rec.forward on BertRecTrainDatasetAllUser's rows (data.py:296-385): BCE at the labelled
    positions (Bert4Rec.py:101-124) + alpha * MSE between the last position of each row and its user's
    neighbours' last input items (no [MASK]). The rows are drawn as ours were (the same seed)."""
    model = model_of("bert4rec")
    torch.manual_seed(11)
    terms = model.loss_terms(batch)
    sequences = [h[-L:] for h in HISTORIES]  # items[:-2], truncated to max_len after masking
    torch.manual_seed(11)
    tokens, labelled = cloze_copies(
        right_aligned(sequences), batch.targets > 0, model.config.cloze_prob, model.mask_token, N_ITEMS
    )
    labels = right_aligned(sequences).repeat(2, 1) * labelled
    positions = public_positions(sequences).repeat(2, 1)  # pos = 1..len(tokens) (data.py:363-367)
    negatives = batch.negatives.repeat(2, 1) * labelled
    feats = public_log2feats(model, tokens, positions)
    at = labels > 0
    pos_logits = (feats[at] * item_vectors(model, labels[at])).sum(-1)
    neg_logits = (feats[at] * item_vectors(model, negatives[at])).sum(-1)
    close(terms["rec"], bce(pos_logits, neg_logits))
    user_feats = public_log2feats(model, tokens, positions)[:, -1]
    close(terms["distill"], distillation(model, user_feats, lambda seqs, pos: public_log2feats(model, seqs, pos)))


def test_bert4rec_scores_are_the_public_ones(float64):
    """Bert4Rec.predict (Bert4Rec.py:127-142): [MASK] appended at position last + 1, the first column dropped;
    a history of max_len items puts [MASK] at position max_len + 1."""
    model = model_of("bert4rec").eval()
    histories = right_aligned(HISTORIES)
    positions = public_positions(HISTORIES)
    log_seqs = torch.cat([histories, torch.full((len(HISTORIES), 1), model.mask_token)], 1)
    positions = torch.cat([positions, positions[:, -1:] + 1], 1)
    feats = public_log2feats(model, log_seqs[:, 1:], positions[:, 1:])[:, -1]
    expected = feats @ item_vectors(model, torch.arange(1, N_ITEMS + 1)).T
    close(model.score(histories), expected)
    assert positions[3, -1] == L + 1  # the fourth history fills the window


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_item_cluster_constraint_is_the_extensions_over_input_items(batch, backbone):
    """ICC-LLM-ESR models/LLMESR.py:68-72 and utils.py:53-75: gamma * mean over every input item occurrence with
    a cluster (repeats counted; bert4rec: the Cloze tokens but [MASK]) of ||e_id(i) - centre||², with the labels
    indexed by item id and the centre the detached mean of its cluster's embeddings (our fixes of its off-by-one
    labels and random frozen projection)."""
    model = model_of(backbone, icc="kmeans", icc_clusters=3, icc_weight=0.5, distill_weight=0.0)
    labels = torch.arange(N_ITEMS + 1) % 4 - 1  # item 0 (padding) and every fourth item: no cluster
    model.item_cluster.copy_(labels)
    torch.manual_seed(11)
    terms = model.loss_terms(batch)
    if backbone == "bert4rec":
        torch.manual_seed(11)
        sequences = right_aligned([h[-L:] for h in HISTORIES])
        seq, _ = cloze_copies(sequences, batch.targets > 0, model.config.cloze_prob, model.mask_token, N_ITEMS)
        item_ids = seq[(seq > 0) & (seq != model.mask_token)]
    else:
        item_ids = batch.inputs[batch.inputs > 0]
    item_ids = item_ids[labels[item_ids] != -1]
    embeddings = model.id_embeddings.weight[: N_ITEMS + 1]
    centres = torch.stack([embeddings[labels == c].mean(0) for c in range(3)]).detach()
    expected = 0.5 * torch.mean(torch.norm(embeddings[item_ids] - centres[labels[item_ids]], p=2, dim=1) ** 2)
    close(terms["icc"], expected)

    terms["icc"].backward()  # the centres are targets: only the constrained items' embeddings move
    moved = model.id_embeddings.weight.grad.abs().sum(1) > 0
    assert moved.nonzero().flatten().tolist() == sorted(set(item_ids.tolist()))


@pytest.mark.parametrize("causal", [False, True])
def test_public_backbone_block_alone(causal, float64):
    """The transformer block by itself (a regression here is easier to read than in the losses)."""
    model = model_of("sasrec", causal_attention=causal)
    tokens = right_aligned(HISTORIES)
    vectors = torch.randn(len(HISTORIES), L, D)
    close(model.encoder(tokens, vectors=vectors.clone()), sasrec_backbone(vectors, tokens, model.encoder, causal))
