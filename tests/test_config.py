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


@pytest.mark.parametrize("values, message", [
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
])
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
