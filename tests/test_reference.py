"""The public ELCRec checkpoint must score exactly the published numbers (REFERENCE_NUMBERS.md)."""

import pytest
from conftest import REFERENCE_DIR, benchmark_file

EXPECTED = {"HR@5": 0.0529, "NDCG@5": 0.0355, "HR@20": 0.1079, "NDCG@20": 0.0509}


@pytest.fixture(scope="module")
def beauty():
    from elcrec import Config
    from elcrec.data import load_dataset

    return load_dataset(Config(data=str(benchmark_file("Beauty"))))


@pytest.fixture(scope="module")
def reference_model(beauty):
    from elcrec.models.reference import import_reference

    path = REFERENCE_DIR / "ELCRec-Beauty-1.pt"
    if not path.is_file():
        pytest.skip(f"{path} not found: the reference checkpoint lives in ../shared/reference")
    model, config, left_out = import_reference(path, beauty.item_ids, preset="beauty")
    assert left_out == [] and (config.model, config.num_layers, config.num_clusters) == ("elcrec", 1, 256)
    return model


@pytest.mark.parametrize("mask_history", ["reference", "exclude"])
def test_reference_checkpoint_reproduces_published_numbers(beauty, reference_model, mask_history):
    from elcrec.data import eval_set
    from elcrec.evaluation import evaluate

    result = evaluate(reference_model, eval_set(beauty, 50, "test"), ks=(5, 20), mask_history=mask_history)
    assert {k: round(result[k], 4) for k in EXPECTED} == EXPECTED


def test_beauty_statistics(beauty):
    assert (beauty.n_users, beauty.n_items, beauty.n_interactions) == (22363, 12101, 198502)


def test_import_reference_command_writes_a_run_that_evaluates_the_same(beauty, tmp_path):
    import json

    from typer.testing import CliRunner

    from elcrec.cli.main import app

    checkpoint = REFERENCE_DIR / "ELCRec-Beauty-1.pt"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} not found")
    data = str(benchmark_file("Beauty"))
    runner = CliRunner()
    result = runner.invoke(
        app, ["import-reference", str(checkpoint), "--data", data, "--preset", "beauty", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    imported = json.loads((tmp_path / "metrics.json").read_text())["test"]
    assert {k: round(imported[k], 4) for k in EXPECTED} == EXPECTED
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--json", "--ks", "5,20"])
    assert result.exit_code == 0, result.output
    assert {k: round(v, 4) for k, v in json.loads(result.output).items() if k in EXPECTED} == EXPECTED
    # imported without its data: the command says how to evaluate it, which then scores the same (its weights
    # are the trained ones: no note about untrained starting weights)
    result = runner.invoke(
        app, ["import-reference", str(checkpoint), "--preset", "beauty", "--out", str(tmp_path / "bare")]
    )
    assert result.exit_code == 0 and "elcrec evaluate" in result.output and "--data FILE" in result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path / "bare"), "--json", "--ks", "5,20", "--data", data])
    assert result.exit_code == 0 and "untrained" not in result.output, result.output
    assert {k: round(v, 4) for k, v in json.loads(result.output).items() if k in EXPECTED} == EXPECTED


def test_a_checkpoint_refuses_data_with_other_item_ids(beauty):
    """The reference sizes its item table by its data's largest id: data whose ids end elsewhere (Toys' end at
    11,924, Beauty's at 12,101) is other data, not a subset to score."""
    from elcrec.models.reference import import_reference

    path = REFERENCE_DIR / "ELCRec-Beauty-1.pt"
    if not path.is_file():
        pytest.skip(f"{path} not found: the reference checkpoint lives in ../shared/reference")
    with pytest.raises(ValueError, match="ids go up to 12101 .* it belongs to other data"):
        import_reference(path, beauty.item_ids[beauty.item_ids < 11925], preset="beauty")


def test_an_import_over_a_run_leaves_nothing_of_it(tmp_path):
    """import-reference --overwrite removed only metrics.json: the old run's data fingerprint, training state,
    log, report and intents stayed, describing another model (evaluate --data then refused the right data)."""
    from typer.testing import CliRunner

    from elcrec import Config
    from elcrec.cli.main import app
    from elcrec.training import train

    checkpoint = REFERENCE_DIR / "ELCRec-Beauty-1.pt"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} not found")
    run = tmp_path / "run"
    config = Config(synthetic_users=150, synthetic_items=50, hidden_size=16, epochs=1, output_dir=str(run))
    train(config, progress=False)
    for name in ("report.html", "intents.csv"):
        (run / name).write_text("of the old run")
    result = CliRunner().invoke(app, ["import-reference", str(checkpoint), "--preset", "beauty", "--out", str(run)])
    assert result.exit_code == 2 and "holds a run's files" in result.output
    args = ["import-reference", str(checkpoint), "--preset", "beauty", "--out", str(run), "--overwrite"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert sorted(path.name for path in run.iterdir() if not path.name.startswith(".")) == [
        "config.json",
        "items.json",
        "model.pt",
    ]
