import copy
import dataclasses
import json
import re

import pytest

from elcrec import Config, ConfigError
from elcrec.config import _field_type


def test_file_values_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("hidden_size: 32\nnum_heads: 4\nlr: 1e-4\neval_ks: [1, 10]\nmetric: HR@10\n")
    config = Config.load(path, hidden_size=48, num_layers=None)
    assert (config.hidden_size, config.num_heads, config.lr, config.eval_ks) == (48, 4, 1e-4, (1, 10))
    assert config.num_layers == 2  # None means "flag not given"
    toml = tmp_path / "run.toml"
    toml.write_text('model = "pop"\neval_ks = "5,20"\n')
    assert Config.load(toml).eval_ks == (5, 20)


def test_a_whole_number_written_as_a_float_is_an_integer_setting(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"epochs": 3.0, "batch_size": 1e2, "eval_ks": [5.0, 20]}')
    config = Config.load(path)
    assert (config.epochs, config.batch_size, config.eval_ks) == (3, 100, (5, 20))
    assert all(type(v) is int for v in (config.epochs, config.batch_size, *config.eval_ks))


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
        ({"model": "sasrec", "causal_attention": False}, "causal_attention=False is a setting of llmesr"),
        ({"model": "gru4rec", "backbone_code": "library"}, "backbone_code='library' is a setting of llmesr"),
        ({"model": "llmesr", "hidden_size": 15, "num_heads": 1}, "2-head cross-attention needs an even size"),
        ({"long_tail": "pareto"}, "choose one of share, thresholds"),
        ({"tail_item_threshold": -1}, "must be 0 or more"),
        ({"lr": "inf"}, "lr='inf': must be a finite number"),
        ({"lr": float("nan")}, "must be a finite number"),
        ({"trade_off": "1e400"}, "must be a finite number"),
        ({"lr": 1e39}, "in float32's range"),
        ({"temperature": float("-inf")}, "must be a finite number"),
        ({"temperature": 1e-30}, r"temperature=1e-30: must be at least 0.001 \(contrastive temperatures"),
        ({"seed": -1}, r"seed=-1: must be in 0..2147483647"),
        ({"seed": 2**32}, r"seed=4294967296: must be in 0..2147483647"),
        ({"synthetic_seed": -1}, r"synthetic_seed=-1: must be in 0..2147483647"),
        ({"weight_decay": -0.1}, "weight_decay=-0.1: must be 0 or more"),
        ({"threads": 1}, "threads is not a setting: give --threads on the command line"),
        ({"elcm": 2}, r"elcm=2: expected true or false \(yes/no, 1/0\)"),
        ({"epochs": "\u0663"}, "epochs='\u0663': expected int"),  # Arabic-Indic 3: int() reads it as 3
        ({"epochs": "1_0"}, "expected int"),
        ({"epochs": 1.5}, "epochs=1.5: expected int"),
        ({"epochs": float("inf")}, "expected int"),
        ({"eval_ks": "\u0665,10"}, "expected int"),
        ({"lr": "\u0661e-3"}, "expected float"),
        ({"user_col": "item_id"}, "user_col='item_id', item_col='item_id', .*: each role needs a column of its own"),
        ({"time_col": "user_id"}, "time_col='user_id': each role needs a column of its own"),
    ],
)
def test_bad_values_are_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(values)


def test_every_number_setting_has_a_range_and_a_value_just_outside_it_is_refused():
    """A setting's range lives in its field (config._opt): one a newcomer leaves out fails here, and each bound
    holds for its own setting, named in the error."""
    for f in dataclasses.fields(Config):
        kind, valid = _field_type(f), f.metadata["valid"]
        assert (valid is not None) == (kind in (int, float)), f.name
        if valid is None:
            continue
        step = 1 if kind is int else 0.5 * (valid.at_least or 1)
        outside = [valid.above, valid.below] + [
            bound + sign * step for bound, sign in ((valid.at_least, -1), (valid.at_most, 1)) if bound is not None
        ]
        for value in (kind(v) for v in outside if v is not None):
            with pytest.raises(ConfigError, match=f"^{f.name}={value}: must be {re.escape(str(valid))}"):
                Config(**{f.name: value})
        inside = kind(valid.above + step if valid.above is not None else valid.at_least)  # on the bound, if any
        try:
            Config(**{f.name: inside})
        except ConfigError as error:  # another rule's (hidden_size=1 with 2 heads): not the range's
            assert f"must be {valid}" not in str(error)


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


def test_a_recipe_fills_what_is_not_given_and_wins_over_a_preset():
    from elcrec.config import RECIPES

    assert RECIPES["faithful"] == {}  # the defaults are the reference code's recipe
    fast = Config(preset="beauty", model="elcrec", recipe="fast")
    assert {k: getattr(fast, k) for k in RECIPES["fast"]} == RECIPES["fast"]
    assert fast.num_layers == 1 and fast.trade_off == 10.0  # the preset still gives the model's settings
    assert fast.recipe_settings() == RECIPES["fast"] and "epochs" not in fast.preset_settings()
    assert Config(recipe="fast", lr=1e-3).lr == 1e-3 and "lr" not in Config(recipe="fast", lr=1e-3).recipe_settings()
    assert Config(preset="llmesr", model="llmesr", recipe="fast").epochs == RECIPES["fast"]["epochs"]
    assert Config(model="elcrec").replace(recipe="fast") == Config(model="elcrec", recipe="fast")
    assert fast.replace(recipe="faithful") == Config(preset="beauty", model="elcrec")
    assert Config.from_dict(fast.to_dict()) == fast  # a saved run reads back as it ran
    with pytest.raises(ConfigError, match="recipe='quick'"):
        Config(recipe="quick")


def test_a_recipe_may_give_a_model_its_own_values():
    from elcrec.config import RECIPE_MODELS, RECIPES

    bert4rec = Config(preset="beauty", model="bert4rec", recipe="fast")
    assert bert4rec.lr == RECIPE_MODELS["fast"]["bert4rec"]["lr"] != RECIPES["fast"]["lr"]
    assert bert4rec.recipe_settings() == {**RECIPES["fast"], **RECIPE_MODELS["fast"]["bert4rec"]}
    assert bert4rec.replace(model="sasrec").lr == RECIPES["fast"]["lr"]  # the recipe follows the model
    assert Config(model="bert4rec", recipe="fast", lr=1e-3).lr == 1e-3  # given settings still win
    assert Config.from_dict({"model": "bert4rec", "recipe": "fast"}) == Config(model="bert4rec", recipe="fast")


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


def test_llmesr_presets_are_its_scripts():
    """preset=llmesr: experiments/*.bash on any dataset; beauty, fashion and yelp add their long-tail thresholds."""
    recipe = Config(preset="llmesr", model="llmesr")
    assert (recipe.max_len, recipe.batch_size, recipe.epochs, recipe.patience, recipe.metric) == (
        200,
        128,
        200,
        20,
        "NDCG@10",
    )
    assert (recipe.sampled_negatives, recipe.num_heads, recipe.engine, recipe.long_tail) == (
        100,
        1,
        "reference",
        "thresholds",
    )
    assert (recipe.tail_item_threshold, recipe.short_user_threshold) == (20, 10)  # main.py's defaults
    thresholds = {
        ds: (
            Config(preset=ds, model="llmesr").short_user_threshold,
            Config(preset=ds, model="llmesr").tail_item_threshold,
        )
        for ds in ("beauty", "fashion", "yelp")
    }
    assert thresholds == {"beauty": (9, 4), "fashion": (3, 4), "yelp": (12, 13)}
    assert Config(preset="beauty", model="llmesr", backbone="bert4rec").cloze_prob == 0.6
    assert Config(preset="beauty", model="llmesr").cloze_prob == 0.2 and recipe.num_layers == 2
    assert Config(preset="llmesr", model="llmesr", backbone="gru4rec").num_layers == 1  # its GRU: 1 layer
    assert Config(preset="yelp", model="llmesr").replace(backbone="gru4rec").preset_settings()["num_layers"] == 1
    assert Config(preset="llmesr", model="sasrec").preset_settings() == {}  # the recipe is llmesr's only
    assert Config(preset="fashion", model="sasrec").preset_settings() == {}
    assert Config(preset="beauty", model="elcrec").max_len == 50  # ELCRec's Beauty preset is unchanged


def test_a_saved_run_keeps_the_behaviour_of_settings_added_since():
    """config.json of an llmesr run from before backbone_code existed: the library backbone, as it was trained."""
    saved = Config(model="llmesr", item_text="t.npy").to_dict()
    for name in ("backbone_code", "cross_attention_at", "gru_positions", "distill_at", "icc_items"):
        del saved[name]
    old = Config.from_saved(saved)
    assert (old.backbone_code, old.cross_attention_at, old.icc_items) == ("library", "outputs", "targets")
    assert Config.from_dict(saved).backbone_code == "public"  # a config file without the key: today's default
    assert Config.from_saved(Config(model="sasrec").to_dict()) == Config(model="sasrec")


def test_settings_a_model_does_not_read_never_count_as_changes():
    """READ_BY names the models that read each model-specific setting: a run compares (to resume, or to read a
    finished run back) only what its model reads, so one set of flags serves every model of a comparison."""
    from elcrec.config import READ_BY, config_fields

    assert set(READ_BY) <= {name for name, *_ in config_fields()}
    assert Config(model="sasrec", num_clusters=8, trade_off=3.0).differences(Config(model="sasrec")) == {}
    assert Config(model="elcrec", num_clusters=8).differences(Config(model="elcrec")) == {"num_clusters": (8, 256)}
    assert Config(model="iclrec", trade_off=3.0).differences(Config(model="iclrec")) == {}
    assert set(Config(model="sasrec").differences(Config(model="elcrec"))) == {"model"}
    assert "num_clusters" in Config(model="cl4srec").unread() and "cl_weight" not in Config(model="cl4srec").unread()


def test_heads_must_divide_the_hidden_size_only_of_models_with_attention():
    assert Config(model="gru4rec", hidden_size=33).hidden_size == 33
    assert "num_heads" in Config(model="gru4rec").unread()
    with pytest.raises(ConfigError, match="not divisible by num_heads=2"):
        Config(model="sasrec", hidden_size=33)


def test_numpy_numbers_and_paths_are_the_values_they_hold():
    import pathlib

    import numpy as np

    config = Config(epochs=np.int64(3), lr=np.float32(0.5), data=pathlib.Path("synthetic"), eval_ks=(np.int64(5), 20))
    assert (
        Config(elcm=np.bool_(False), eval_ks=np.array([5, 20]), model=np.str_("elcrec")).to_dict()
        == Config(elcm=False, eval_ks=(5, 20), model="elcrec").to_dict()
    )  # numpy's booleans, arrays and strings as the values they hold
    assert (config.epochs, config.data, config.eval_ks) == (3, "synthetic", (5, 20))
    assert type(config.epochs) is int and type(config.lr) is float and config.lr == 0.5
    json.dumps(config.to_dict())  # plain JSON types
    for bad in ({"lr": np.bool_(True)}, {"epochs": 2.5}, {"data": 3}):
        with pytest.raises(ConfigError):
            Config(**bad)


def test_a_built_config_is_read_only():
    """Settings are checked together when built: assigning one afterwards (lr="x", or a num_heads hidden_size
    does not divide) would skip those checks, so it is refused with the way to change it."""
    config = Config(model="sasrec", lr=1e-3)
    for name, value in (("lr", "x"), ("num_heads", 3), ("epochs", 5)):
        with pytest.raises(ConfigError, match=rf"read-only.*config.replace\({name}="):
            setattr(config, name, value)
    assert config.lr == 1e-3 and config.num_heads == 2 and config.replace(epochs=5).epochs == 5
    assert copy.deepcopy(config) == config


def test_a_saved_synthetic_run_from_before_synthetic_seed_keeps_its_data():
    """Before synthetic_seed existed the synthetic data came from seed: a run of that time with seed 3 trained on
    the data of synthetic_seed 3, which evaluate and --resume must rebuild (only item ids are checked)."""
    saved = Config(seed=3).to_dict()
    del saved["synthetic_seed"]
    assert Config.from_saved(saved).synthetic_seed == 3
    assert Config.from_saved({**saved, "synthetic_seed": 1}).synthetic_seed == 1  # saved since: its own
    assert Config.from_saved({**saved, "data": "log.csv"}).synthetic_seed == 1  # unread: the default compares equal


def test_a_metric_is_spelt_as_the_evaluator_names_it():
    """Early stopping looks the metric up by name in each validation's results: a spelling that int() reads but
    the evaluator never writes (NDCG@020) passed, then failed with a KeyError after the first epoch."""
    from elcrec.evaluation.metrics import RankingMetrics

    ks = (1, 5, 20)
    for name in RankingMetrics(ks).result():
        assert Config(eval_ks=ks, metric=name).metric == name
    for spelling, canonical in (("NDCG@020", "NDCG@20"), ("HR@05", "HR@5"), ("ndcg@20", "NDCG@20"), ("Mrr@1", "MRR@1")):
        with pytest.raises(ConfigError, match=f"^metric='{spelling}': write it {canonical}$"):
            Config(eval_ks=ks, metric=spelling)
    with pytest.raises(ConfigError, match="k in eval_ks"):
        Config(metric="NDCG@\u0662\u0660")  # 20 in Arabic-Indic digits


def test_seed_and_temperature_bounds_are_inclusive():
    assert Config(seed=0, synthetic_seed=2**31 - 1).seed == 0
    assert Config(model="cl4srec", temperature=1e-3, weight_decay=0).temperature == 1e-3


@pytest.mark.parametrize(
    "suffix, text, key",
    [(".yaml", "lr: 0.1\nepochs: 2\nlr: 0.2\n", r"'lr' \(line 3\)"), (".json", '{"lr": 0.1, "lr": 0.2}', "'lr'")],
)
def test_a_key_given_twice_in_a_config_file_is_an_error(tmp_path, suffix, text, key):
    """PyYAML and json keep the last of a repeated key silently (TOML refuses one)."""
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"config file {path}: not valid {suffix[1:].upper()}: duplicate key {key}"):
        Config.load(path)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    from elcrec.config import read_config_file

    path = tmp_path / "run.yaml"
    path.write_text("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  x: 3\n")
    assert read_config_file(path) == {"a": {"x": 1, "y": 2}, "b": {"x": 3, "y": 2}}


@pytest.mark.parametrize("suffix, text", [(".yaml", "lr: 0.5\n"), (".json", '{"lr": 0.5}'), (".toml", "lr = 0.5\n")])
def test_a_byte_order_mark_starts_any_config_file(tmp_path, suffix, text):
    """Windows editors write one; PyYAML skipped it, json refused it."""
    path = tmp_path / f"run{suffix}"
    path.write_text("\ufeff" + text, encoding="utf-8")
    assert Config.load(path).lr == 0.5


def test_booleans_take_0_and_1_and_cut_offs_one_number():
    """ "elcm": 0 in JSON was refused while "0" was read; eval_ks: 20 was refused as not a tuple."""
    assert Config(model="elcrec", elcm=0).elcm is False and Config(model="elcrec", elcm=1).elcm is True
    assert Config(model="elcrec", elcm="0").elcm is False and Config(model="elcrec", elcm="yes").elcm is True
    assert Config(eval_ks=20).eval_ks == (20,)


def test_a_path_setting_starting_with_a_tilde_is_in_the_home_folder(tmp_path, monkeypatch):
    """As a shell expands it: output_dir ~/x in a file (or --output-dir=~/x, which the shell leaves) made a folder
    named ~."""
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "run.yaml"
    path.write_text("output_dir: ~/runs/x\ndata: ~/log.csv\n")
    config = Config.load(path)
    assert (config.output_dir, config.data) == (str(tmp_path / "runs/x"), str(tmp_path / "log.csv"))
    assert Config(data="synthetic", output_dir="a~b").output_dir == "a~b"


def test_a_saved_run_with_cut_offs_above_its_sampled_negatives_still_loads():
    """Training refuses them now (every user would hit); runs saved before must still evaluate and serve."""
    saved = {**Config().to_dict(), "sampled_negatives": 10}
    assert Config.from_saved(saved).sampled_negatives == 10 and Config.from_saved(saved).eval_ks == (5, 10, 20)
