import json

import pytest

from elcrec import Config, ConfigError


def test_file_values_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("hidden_size: 32\nnum_heads: 4\nlr: 1e-4\neval_ks: [1, 10]\nmetric: HR@10\n")
    config = Config.load(path, hidden_size=48, num_layers=None)
    assert (config.hidden_size, config.num_heads, config.lr, config.eval_ks) == (48, 4, 1e-4, (1, 10))
    assert config.num_layers == 2  # None means "flag not given"
    toml = tmp_path / "run.toml"
    toml.write_text('model = "pop"\neval_ks = "5,20"\n')
    assert Config.load(toml).eval_ks == (5, 20)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"hiden_size": 3}, "did you mean 'hidden_size'"),
        ({"loss": "mse"}, "choose one of bce, ce"),
        ({"hidden_size": 65}, "not divisible"),
        ({"dropout": 1.5}, r"\[0, 1\)"),
        ({"epochs": "ten"}, "expected int"),
        ({"metric": "NDCG@50"}, "k in eval_ks"),
        ({"batch_size": 0}, "at least 1"),
        ({"max_len": 0}, "max_len=0: must be at least 1"),
        ({"engine": "turbo"}, "choose one of fast, reference"),
        ({"model": "sasrec", "backbone": "gru4rec"}, "llmesr's setting; the plain model is model=gru4rec"),
        ({"model": "sasrec", "padding_outputs": "zero"}, "setting of cl4srec, iclrec and elcrec"),
        ({"lr": "inf"}, "lr='inf': must be a finite number"),
        ({"lr": float("nan")}, "must be a finite number"),
        ({"trade_off": "1e400"}, "must be a finite number"),
        ({"lr": 1e39}, "in float32's range"),
        ({"temperature": float("-inf")}, "must be a finite number"),
    ],
)
def test_bad_values_are_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(values)


def test_round_trip_through_json(tmp_path):
    config = Config(model="sasrec", loss="ce", eval_ks=(1, 5), metric="HR@5", seed=7)
    assert Config.from_dict(json.loads(config.to_json())) == config
    assert config.run_dir.as_posix() == "runs/sasrec-synthetic-seed7"


def test_unknown_config_file_type(tmp_path):
    path = tmp_path / "run.ini"
    path.write_text("x=1")
    with pytest.raises(ConfigError, match="use .yaml"):
        Config.load(path)


def test_a_preset_means_the_same_on_every_construction_path():
    """Config(...), from_dict, load and replace all apply the preset for the run's model; given values win."""
    direct = Config(preset="beauty", model="elcrec")
    assert (direct.num_layers, direct.num_clusters, direct.trade_off, direct.intent_fusion) == (1, 256, 10.0, "shift")
    assert Config.from_dict({"preset": "beauty", "model": "elcrec"}) == direct
    assert Config(model="elcrec").replace(preset="beauty") == direct
    assert Config(preset="beauty", model="elcrec", num_layers=3).num_layers == 3
    assert Config(preset="beauty", model="elcrec", num_layers=3).replace(seed=2).num_layers == 3
    # ICLRec's own scripts: K = 256 on every dataset; ELCRec's K = 512 for Sports and Toys never reaches it
    sports = Config(preset="sports", model="elcrec")
    assert sports.num_clusters == 512 and sports.replace(model="iclrec").num_clusters == 256
    assert sports.replace(model="iclrec").num_layers == 2
    assert Config(preset="toys", model="sasrec").num_layers == 2  # SASRec keeps its paper's 2 blocks
    assert Config(preset="toys", model="bert4rec").cloze_prob == 0.6
    assert direct.preset_settings() == {
        "num_layers": 1,
        "num_clusters": 256,
        "trade_off": 10.0,
        "intent_fusion": "shift",
    }


@pytest.mark.parametrize(
    "suffix, text", [(".yaml", "lr: [1, 2\n"), (".toml", "lr = = 1"), (".json", "{lr: 1}"), (".yaml", "- a list\n")]
)
def test_malformed_config_files_are_errors_naming_the_file(tmp_path, suffix, text):
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"config file {path}"):
        Config.load(path)


def test_the_model_names_are_the_models():
    from elcrec.config import CHOICES
    from elcrec.models import MODELS

    assert tuple(MODELS) == CHOICES["model"]  # config names them without importing torch; one list
