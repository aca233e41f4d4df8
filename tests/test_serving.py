"""Recommender (library) and the HTTP API, through FastAPI's test client and schemathesis (in process)."""

import json

import numpy as np
import pytest
import schemathesis
import torch
from fastapi.testclient import TestClient

from elcrec import Config
from elcrec.data import train_set
from elcrec.models import build_model
from elcrec.runs import Run, export_run, fingerprint, load_run, save_run
from elcrec.serving import HistoryError, Limits, Recommender, create_app


def make_run(data, model="sasrec", path=None, item_ids=None):
    torch.manual_seed(0)
    config = Config(model=model, hidden_size=16, num_clusters=4, max_len=20, kmeans_restarts=1)
    net = build_model(config, data.n_items)
    net.prepare(train_set(data, config.max_len))
    if item_ids is None:
        item_ids = np.array([f"i{n}" for n in range(1, data.n_items + 1)])  # original ids differ from internal ones
    return Run(net.eval(), config, item_ids, path)


@pytest.fixture
def sasrec(tiny_data):
    return Recommender(make_run(tiny_data))


@pytest.fixture
def client(sasrec):
    return TestClient(create_app(sasrec, Limits(max_history=30, max_batch=4, max_k=50, max_body_bytes=4096)))


def test_recommend_is_the_top_k_of_the_model_scores(sasrec):
    history = ["i3", "i9", "i4"]
    result = sasrec.recommend([history], k=5)[0]
    scores = sasrec.model.score(torch.tensor([[3, 9, 4]]))[0]
    scores[[2, 8, 3]] = float("-inf")
    top = torch.topk(scores, 5)
    assert result["items"] == [f"i{c + 1}" for c in top.indices.tolist()]
    assert result["scores"] == pytest.approx(top.values.tolist(), rel=1e-6)
    assert not set(result["items"]) & set(history) and result["unknown"] == []
    kept = sasrec.recommend([history], k=60, exclude_seen=False)[0]["items"]
    assert set(history) <= set(kept)


def test_batch_equals_single_requests_and_long_histories_keep_the_tail(sasrec):
    histories = [["i1"], ["i5", "i6", "i7"], [f"i{n % 60 + 1}" for n in range(45)]]
    batch = sasrec.recommend(histories, k=7)
    for history, result in zip(histories, batch):
        assert sasrec.recommend([history], k=7)[0]["items"] == result["items"]
    kept = sasrec.recommend(histories[2:], k=7, exclude_seen=False)[0]["items"]
    assert kept == sasrec.recommend([histories[2][-20:]], k=7, exclude_seen=False)[0]["items"]  # max_len 20


def test_unknown_items_are_ignored_reported_or_rejected(sasrec):
    result = sasrec.recommend([["i3", "nope", 17]], k=3)[0]
    assert result["unknown"] == ["nope", 17]
    assert result["items"] == sasrec.recommend([["i3"]], k=3)[0]["items"]
    with pytest.raises(HistoryError, match="does not know: 'nope'"):
        sasrec.recommend([["i3", "nope"]], unknown="reject")
    with pytest.raises(HistoryError, match="no item the model knows"):
        sasrec.recommend([["x", "y"]])
    with pytest.raises(ValueError, match="k=0"):
        sasrec.recommend([["i3"]], k=0)


def held_forms(history):
    """`history` (item ids 1..60) as people hold it: one flat history in every form, then several."""
    one = {
        "list": list(history),
        "tuple": tuple(history),
        "text ids": [str(i) for i in history],
        "numpy int64": np.array(history),
        "numpy int32": np.array(history, dtype=np.int32),
        "numpy scalars": [np.int64(i) for i in history],
        "numpy strings": np.array([str(i) for i in history]),
        "mixed scalars": [np.uint8(history[0]), str(history[1]), *history[2:]],
    }
    several = {
        "2-D array": np.array([history]),
        "object array": np.array([np.array(history)], dtype=object),
        "list of arrays": [np.array(history)],
        "tuple of tuples": (tuple(history),),
    }
    return one, several


def as_text(results):
    """`results` with their unknown items as text: "250" and 250 are reported as given."""
    return [{**result, "unknown": [str(item) for item in result["unknown"]]} for result in results]


def test_recommend_and_intents_take_histories_as_people_hold_them(tiny_data):
    run = make_run(tiny_data, "elcrec", item_ids=np.arange(1, 61))  # integer ids: 5, np.int64(5) and "5" agree
    rec, history = Recommender(run), [3, 9, 4, 250]
    expected, intent = rec.recommend([history], k=5), rec.intents([history])
    assert expected[0]["unknown"] == [250]
    one, several = held_forms(history)
    for name, held in {**one, **several}.items():  # a list of one result for one flat history too
        assert as_text(rec.recommend(held, k=5)) == as_text(expected), name
        assert as_text(rec.intents(held)) == as_text(intent), name
    assert type(rec.recommend(np.array(history))[0]["unknown"][0]) is int  # numpy arrays give Python scalars
    batch = [[3, 9], [np.int64(17)], ("4", "20")]
    assert rec.recommend(np.array([[3, 9], [17, 250]]), k=3) == rec.recommend([[3, 9], [17, 250]], k=3)
    assert rec.recommend(batch, k=3) == rec.recommend([[3, 9], [17], [4, 20]], k=3)
    assert rec.parse([[np.int64(5), 5, "5", np.str_("5")]])[0][0].tolist() == [5] * 4


def test_numpy_strings_find_string_ids(sasrec):
    expected = sasrec.recommend([["i3", "i9"]], k=4)
    for held in (np.array(["i3", "i9"]), [np.str_("i3"), "i9"], np.array([["i3", "i9"]]), np.array(["i3", "i9"], "O")):
        assert sasrec.recommend(held, k=4) == expected


@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_a_series_is_one_history_and_a_series_of_lists_several(sasrec, library):
    series = pytest.importorskip(library).Series
    assert sasrec.recommend(series(["i3", "i9"]), k=4) == sasrec.recommend([["i3", "i9"]], k=4)
    several = sasrec.recommend([["i3"], ["i9", "i2"]], k=4)
    assert sasrec.recommend(series([["i3"], ["i9", "i2"]]), k=4) == several
    assert sasrec.recommend([series(["i3"]), series(["i9", "i2"])], k=4) == several


@pytest.mark.parametrize(
    "held, message",
    [
        ("i3 i9", "a history is a sequence of item ids, not a string: 'i3 i9'"),
        (b"i3", "not a string: b'i3'"),
        (np.str_("i3"), "not a string"),
        ([["i3"], "i9"], "histories mix item ids and sequences"),
        ({"i3", "i9"}, "got set"),
        (np.array([[["i3"]]]), r"got ndarray of shape \(1, 1, 1\)"),
        (7, "got int"),
        ([], "history 0 is empty"),
        ([["i3"], []], "history 1 is empty"),
    ],
    ids=["str", "bytes", "numpy str", "mixed", "set", "3-D array", "int", "nothing", "an empty one"],
)
def test_what_is_not_a_history_is_a_clear_error(sasrec, held, message):
    with pytest.raises(HistoryError, match=message):
        sasrec.recommend(held)
    with pytest.raises(HistoryError, match=message):
        sasrec.parse(held)


def test_http_recommend_health_and_metadata(client, sasrec):
    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    assert (meta["model"], meta["n_items"], meta["limits"]["max_k"]) == ("sasrec", 60, 50)
    unclamped = TestClient(create_app(sasrec, Limits(max_k=1000)))
    assert unclamped.get("/metadata").json()["limits"]["max_k"] == 60  # the limit applied: k <= n_items
    assert unclamped.post("/recommend", json={"history": ["i1"], "k": 61}).status_code == 422
    response = client.post("/recommend", json={"history": ["i3", "i9", 4], "k": 5})
    assert response.status_code == 200
    assert response.json()["items"] == sasrec.recommend([["i3", "i9"]], k=5)[0]["items"]
    assert response.json()["unknown"] == [4]
    batch = client.post("/recommend/batch", json={"histories": [["i3"], ["i9", "i2"]], "k": 2}).json()["results"]
    assert [r["items"] for r in batch] == [r["items"] for r in sasrec.recommend([["i3"], ["i9", "i2"]], k=2)]
    schema = client.get("/openapi.json").json()
    assert {"/recommend", "/recommend/batch", "/intents", "/health", "/metadata"} <= set(schema["paths"])


def test_metadata_names_files_without_the_server_paths_and_follows_its_schema(tiny_data, tmp_path):
    run = make_run(tiny_data)
    run.config = run.config.replace(data="/srv/private/Beauty.txt", output_dir=str(tmp_path / "runs" / "b"))
    client = TestClient(create_app(Recommender(run)))
    meta = client.get("/metadata").json()
    config = meta["config"]
    assert (config["data"], config["output_dir"], config["item_text"]) == ("Beauty.txt", "b", "")
    assert "/srv" not in json.dumps(meta) and str(tmp_path) not in json.dumps(meta)
    schema = client.get("/openapi.json").json()
    declared = schema["paths"]["/metadata"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    fields = schema["components"]["schemas"][declared["$ref"].rsplit("/", 1)[1]]["properties"]
    assert set(fields) == set(meta)


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"history": []}, "at least 1"),
        ({"history": ["i1"] * 31}, "at most 30"),
        ({"history": ["i1"], "k": 0}, "greater than or equal to 1"),
        ({"history": ["i1"], "k": -3}, "greater than or equal to 1"),
        ({"history": ["i1"], "k": 51}, "less than or equal to 50"),
        ({"history": "i1 i2"}, "valid list"),
        ({"history": [["i1"]]}, "valid"),
        ({"history": ["i1"], "colour": "red"}, "Extra inputs"),
        ({"items": ["i1"]}, "Field required"),
        ({"history": ["x"]}, "no item the model knows"),
    ],
)
def test_http_rejects_bad_requests_with_a_clear_422(client, body, fragment):
    response = client.post("/recommend", json=body)
    assert response.status_code == 422
    assert fragment in str(response.json()["detail"])
    assert "Traceback" not in response.text
    assert '"input"' not in response.text  # the request is not echoed back (a long history came back whole)


NOT_JSON_OR_NOT_THE_SCHEMA = {
    "k NaN": b'{"history": ["i1"], "k": NaN}',
    "k 1e400": b'{"history": ["i1"], "k": 1e400}',
    "k -Infinity": b'{"history": ["i1"], "k": -Infinity}',
    "item NaN": b'{"history": ["i1", NaN]}',
    "item -1e999": b'{"histories": [[-1e999]]}',
    "lone surrogate": b'{"history": ["i1", "\\ud800"]}',
    "lone surrogate key": b'{"history": ["i1"], "\\udfff": 1}',
    "not UTF-8": b'{"history": ["\xff"]}',
    "4400 digits": b'{"history": [' + b"7" * 4400 + b"]}",
    "3000 deep": b"[" * 3000 + b"]" * 3000,
    "k '5'": b'{"history": ["i1"], "k": "5"}',
    "exclude_seen 1": b'{"history": ["i1"], "exclude_seen": 1}',
    "item true": b'{"history": [true]}',
    "item 1.5": b'{"history": [1.5]}',
}


@pytest.mark.parametrize("body", NOT_JSON_OR_NOT_THE_SCHEMA.values(), ids=NOT_JSON_OR_NOT_THE_SCHEMA.keys())
def test_http_answers_what_json_or_the_schema_has_not_with_the_declared_422(sasrec, body):
    """Python's json reads NaN, Infinity and 1e400 (which the response encoder then fails on: a 500), and
    pydantic's lax mode takes "5" for a number and 1 for a boolean: all are a 422 with the declared body."""
    app = create_app(sasrec)
    client = TestClient(app, raise_server_exceptions=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for path in ("/recommend", "/recommend/batch", "/intents"):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, response.text)
        schema[path]["POST"].validate_response(response)


def test_http_reads_json_numbers_as_json_schema_does(tiny_data):
    """JSON has one number type: k 5.0 is k 5 and item 3.0 is item 3, as JSON Schema's "integer" says."""
    client = TestClient(create_app(Recommender(make_run(tiny_data, item_ids=np.arange(1, 61)))))
    response = client.post(
        "/recommend", content=b'{"history": [3.0, 9], "k": 5.0}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["items"] == client.post("/recommend", json={"history": [3, 9], "k": 5}).json()["items"]


def test_http_errors_match_the_published_schema(tiny_data):
    """Domain errors (the model's catalogue, not the schema, decides them) carry a declared status and body."""
    sasrec = Recommender(make_run(tiny_data))
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(sasrec, Limits(max_body_bytes=4096)))
    reject = schemathesis.openapi.from_asgi("/openapi.json", create_app(sasrec, Limits(unknown="reject")))
    cases = [
        (schema, "/recommend", {"history": ["x", 5]}, 422, "no item the model knows"),
        (schema, "/recommend/batch", {"histories": [["i1"], ["y"]]}, 422, "history 1 has no item"),
        (reject, "/recommend", {"history": ["i1", "zz"]}, 422, "does not know: 'zz'"),
        (schema, "/recommend", {"history": ["i1"] * 1000}, 413, "4096 bytes"),
        (schema, "/intents", {"histories": [["i1"]]}, 400, "has no intents"),
        (schema, "/recommend", {"history": ["i1"], "k": 1000}, 422, "less than or equal to 60"),
    ]
    for api, path, body, status, fragment in cases:
        response = api[path]["POST"].Case(body=body).call_and_validate()  # every default check but the generated
        assert response.status_code == status and fragment in str(response.json()["detail"]), (path, body)
    paths = schema.raw_schema["paths"]
    assert {"200", "413", "422"} <= set(paths["/recommend"]["post"]["responses"])
    assert "400" in paths["/intents"]["post"]["responses"]


@pytest.fixture
def api_schema(tiny_data):
    elcrec = Recommender(make_run(tiny_data, "elcrec"))  # a model with intents: every operation can succeed
    # the body limit stays at its 1 MiB default: a 413 comes before validation, for valid and invalid bodies alike
    app = create_app(elcrec, Limits(max_history=30, max_batch=4, max_k=50))
    config = schemathesis.Config.from_dict({"seed": 7, "generation": {"max-examples": 50, "database": "none"}})
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
def test_http_api_passes_schemathesis(case):
    """Every default check (no 5xx, declared statuses, content types and bodies, schema-valid requests accepted,
    invalid ones rejected) over examples, coverage cases and fuzzed requests, positive and negative, fixed seed."""
    if case.meta.generation.mode.is_positive and isinstance(case.body, dict):
        # which ids exist is the catalogue's business, not the schema's (as a 404 for an unknown resource id):
        # a schema-valid history starts with a catalogue item so that it reaches the model
        for history in case.body.get("histories", [case.body.get("history")]):
            history[0] = f"i{len(history)}"
    case.call_and_validate()


def test_http_batch_limits_malformed_json_and_body_size(client):
    assert client.post("/recommend/batch", json={"histories": [["i1"]] * 5}).status_code == 422
    assert client.post("/recommend/batch", json={"histories": [["i1"], []]}).status_code == 422
    malformed = client.post("/recommend", content=b'{"history": [', headers={"content-type": "application/json"})
    assert malformed.status_code == 422
    huge = client.post("/recommend", json={"history": ["i1"] * 2000})
    assert huge.status_code == 413 and "4096 bytes" in huge.json()["detail"]
    streamed = client.post(
        "/recommend", content=(b"x" * 1024 for _ in range(8)), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_http_keeps_serving_after_a_burst_of_bad_requests(client):
    for n in range(50):
        assert client.post("/recommend", json={"history": [], "k": -n}).status_code == 422
    assert client.post("/recommend", json={"history": ["i1"]}).status_code == 200


def test_reject_policy_over_http(sasrec):
    client = TestClient(create_app(sasrec, Limits(unknown="reject")))
    response = client.post("/recommend", json={"history": ["i1", "zz"]})
    assert response.status_code == 422 and "'zz'" in response.json()["detail"]


def test_intents_endpoint(tiny_data):
    elcrec = Recommender(make_run(tiny_data, "elcrec"))
    client = TestClient(create_app(elcrec))
    results = client.post("/intents", json={"histories": [["i1", "i2"], ["i7"]]}).json()["results"]
    padded = torch.zeros(2, 20, dtype=torch.long)
    padded[0, -2:] = torch.tensor([1, 2])
    padded[1, -1] = 7
    intent, distance = elcrec.model.assign(padded)
    assert [r["intent"] for r in results] == intent.tolist()
    assert [r["distance"] for r in results] == pytest.approx(distance.tolist(), rel=1e-5)
    sasrec = TestClient(create_app(Recommender(make_run(tiny_data))))
    response = sasrec.post("/intents", json={"histories": [["i1"]]})
    assert response.status_code == 400 and "no intents" in response.json()["detail"]


def test_faiss_index_agrees_with_exact_ranking(tiny_data):
    run = make_run(tiny_data)
    exact, approximate = Recommender(run), Recommender(run, index="faiss")
    histories = [[f"i{(7 * u + j) % 60 + 1}" for j in range(u % 5 + 1)] for u in range(40)]
    found = [
        set(a["items"]) & set(e["items"])
        for a, e in zip(approximate.recommend(histories, k=10), exact.recommend(histories, k=10))
    ]
    assert sum(map(len, found)) / (10 * len(histories)) >= 0.9


def test_exported_artefact_round_trips_and_bad_files_are_named(tiny_data, tmp_path):
    run = make_run(tiny_data, "elcrec")
    save_run(tmp_path / "run", run.model, run.config, run.item_ids)
    export_run(tmp_path / "run", tmp_path / "model.elcrec.pt")
    loaded = Recommender.load(tmp_path / "model.elcrec.pt", device="cpu")
    history = [["i4", "i8"]]
    assert loaded.recommend(history) == Recommender(run).recommend(history)
    assert torch.load(tmp_path / "model.elcrec.pt", weights_only=True)["format"] == "elcrec-model/1"
    data = (tmp_path / "model.elcrec.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot be read as a run folder or an elcrec model artefact"):
        load_run(tmp_path / "truncated.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="elcrec export"):
        load_run(tmp_path / "foreign.pt")


def test_a_broken_score_is_never_recommended(sasrec, monkeypatch):
    """NaN sorts first in torch.topk: non-finite scores are ranked last (left out) instead."""
    score = sasrec.model.score

    def broken(histories):
        scores = score(histories)
        scores[:, :3] = torch.tensor([float("nan"), float("inf"), float("-inf")])
        return scores

    monkeypatch.setattr(sasrec.model, "score", broken)
    items = sasrec.recommend([["i9", "i4"]], k=10)[0]["items"]
    assert len(items) == 10 and not {"i1", "i2", "i3"} & set(items)


def test_k_left_out_is_ten_or_every_item_and_never_above_max_k():
    """A request without k gets 10 items, or every item of a smaller catalogue, and never more than max_k: the
    schema's default could exceed the limit (serve --max-k 3 returned 10 items; on 8 items every request was a 500)."""
    from elcrec.data import make_synthetic

    small = Recommender(make_run(make_synthetic(n_users=40, n_items=8, n_intents=2, seed=1)))
    assert len(small.recommend(["i1"], exclude_seen=False)[0]["items"]) == 8
    for recommender, limits, expected in ((small, Limits(), 8), (small, Limits(max_k=3), 3)):
        client = TestClient(create_app(recommender, limits))
        single = client.post("/recommend", json={"history": ["i1"], "exclude_seen": False})
        batch = client.post("/recommend/batch", json={"histories": [["i1"]], "exclude_seen": False})
        assert single.status_code == 200 and len(single.json()["items"]) == expected
        assert batch.status_code == 200 and len(batch.json()["results"][0]["items"]) == expected
        schema = client.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]["properties"]["k"]
        assert schema["default"] == expected <= schema["maximum"]


@pytest.mark.parametrize("ef_search", [0, -1, 2**31, 2.5, True])
def test_faiss_ef_search_out_of_range_is_refused(tiny_data, ef_search):
    """efSearch 0 returned one item whatever k was, and one beyond a C int overflowed inside faiss."""
    with pytest.raises(ValueError, match=r"ef_search=.*choose an integer 1\.\."):
        Recommender(make_run(tiny_data), index="faiss", ef_search=ef_search)


def test_export_never_overwrites_the_run_it_exports(tiny_data, tmp_path):
    """export --out RUN/model.pt replaced the run's weights with the artefact and broke the run."""
    from elcrec.runs import RunError

    run = make_run(tiny_data)
    save_run(tmp_path / "run", run.model, run.config, run.item_ids)
    files = {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()}
    for name in files:
        with pytest.raises(RunError, match="a file of the run being exported"):
            export_run(tmp_path / "run", tmp_path / "run" / name)
    with pytest.raises(RunError, match="is a folder"):
        export_run(tmp_path / "run", tmp_path)
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()} == files
    export_run(tmp_path / "run" / "model.pt", tmp_path / "run" / "model.elcrec.pt")  # a new file inside: fine
    assert Recommender.load(tmp_path / "run" / "model.elcrec.pt").recommend(["i3"]) == Recommender(run).recommend(
        ["i3"]
    )


def test_whole_floats_are_the_integer_ids_they_hold(tiny_data):
    """Ids read through a float column (pandas makes one of ids with gaps) find their items and users, as the
    HTTP API's JSON numbers do; 5.5 is no id."""
    recommender = Recommender(make_run(tiny_data, item_ids=np.arange(1, tiny_data.n_items + 1)))
    expected = recommender.recommend([[5, 6]])
    assert recommender.recommend([[5.0, 6.0]]) == expected
    assert recommender.recommend(np.array([5.0, 6.0])) == expected
    assert recommender.recommend([[5, 6, 5.5]])[0]["unknown"] == [5.5]


def test_a_catalogue_of_float_ids_finds_its_items_by_the_integers_they_hold(tiny_data):
    """A model trained on a float id column (items.json holds 5.0) knows item 5, asked as 5, 5.0 or "5"."""
    recommender = Recommender(make_run(tiny_data, item_ids=np.arange(1.0, tiny_data.n_items + 1)))
    expected = recommender.recommend([[5.0, 6.0]])
    assert not expected[0]["unknown"]
    assert recommender.recommend([[5, 6]]) == recommender.recommend([["5", "6"]]) == expected


def test_serving_and_the_recommend_command_never_import_training(tiny_data, tmp_path):
    """Serving sits below training: the recommend command loaded the trainer through the CLI's progress bar."""
    import subprocess
    import sys

    run = make_run(tiny_data)
    save_run(tmp_path / "run", run.model, run.config, run.item_ids)
    command = ["recommend", str(tmp_path / "run"), "--history", "i1", "--threads", "1"]
    code = (
        "import sys; from typer.testing import CliRunner; from elcrec.cli.main import app; import elcrec.serving.app; "
        f"done = CliRunner().invoke(app, {command!r}); "
        "assert done.exit_code == 0, done.output; print(sorted(m for m in sys.modules if 'elcrec.training' in m))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]", (done.stdout, done.stderr[-2000:])


def test_loading_a_run_leaves_the_callers_random_stream_and_takes_device_names(tiny_data, tmp_path):
    """Building the model drew its initial weights from torch's global stream; device="cuda" without CUDA was an
    AssertionError from inside torch."""
    run = make_run(tiny_data)
    save_run(tmp_path / "run", run.model, run.config, run.item_ids)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    load_run(tmp_path / "run")
    assert torch.equal(torch.rand(3), expected)
    assert load_run(tmp_path / "run", "auto").model is not None
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            load_run(tmp_path / "run", "cuda")


def test_users_are_found_in_data_given_by_its_path(tmp_path):
    """recommend_users(data="Beauty.txt") failed: 'str' object has no attribute 'offsets'."""
    from elcrec.data import load_dataset

    path = tmp_path / "log.txt"
    lines = (f"{u} " + " ".join(str(1 + (u * 7 + j) % 30) for j in range(6)) for u in range(1, 41))
    path.write_text("\n".join(lines) + "\n")
    data = load_dataset(Config(data=str(path)))
    run = make_run(data, item_ids=data.item_ids)
    run.config = run.config.replace(data=str(path))
    save_run(tmp_path / "run", run.model, run.config, run.item_ids, fingerprint(data))
    recommender = Recommender.load(tmp_path / "run")
    moved = tmp_path / "moved.txt"
    path.rename(moved)
    assert recommender.recommend_users([3, 5], k=4, data=moved) == recommender.recommend_users([3, 5], k=4, data=data)
