"""Build the ONNX models that the example specs serve: no downloads, same bytes every run.

Each model is trained with scikit-learn on a data set bundled with it, on
`specs/data/tickets.tsv`, or on data drawn from a seeded numpy generator; its
graph is then written by hand with `onnx.helper` (opset 17, IR version 8, the
first dimension of every input and output the symbolic `batch`), and the
written graph is run in onnxruntime on the held-out quarter of its data. The
accuracy printed is that of the file on disk, not of the scikit-learn object.

That held-out quarter is also written as the model's evaluation set,
`<name>-eval.npz` (one float32 array per graph input, samples first, inputs
only), for fraud, recs, triage and obstacle: the sets that a spec's
`eval "models/<name>-eval.npz"` names, on which the compiler measures how often
an int8 or fp16 artifact agrees with the fp32 file. fraud-v4 and fraud-lite
share fraud's set, recs-lite shares recs's. The archives are written with fixed
member dates, so their bytes too are the same every run.

    fraud.onnx       features fp32[batch,30] -> score fp32[batch,2]
    fraud-v4.onnx    the same signature, a bigger net (the canary)
    fraud-lite.onnx  the same signature, distilled (the fallback)
        Stand-ins for card-fraud scorers. scikit-learn's bundled breast-cancer
        set has a fraud scorer's shape (30 numeric features a row, a binary
        label) and is real data, so the accuracy means something; "fraud" is
        the malignant class, `score[:, 1]`. fraud: StandardScaler (as Sub, Mul)
        and an MLP(32) (MatMul, Add, Relu) ending in Softmax; fraud-v4: an
        MLP(64, 32); fraud-lite: a logistic regression fitted to fraud's
        predictions on the training split, never to the labels.
    intent.onnx      text bytes[batch] -> intent fp32[batch,12]
        Support-ticket triage over free text: 12 intents (`INTENTS`), 20
        hand-written tickets each in `data/tickets.tsv`, some holding the
        placeholders that the gateway's redaction leaves ([EMAIL], [IBAN]).
        StringNormalizer (lower case) -> com.microsoft Tokenizer (runs of
        [a-z0-9]) -> TfIdfVectorizer (unigram counts over the training
        vocabulary) -> a multinomial logistic regression (MatMul, Add, Softmax).
    recs.onnx        history fp32[batch,64] -> ranking fp32[batch,10]
    recs-lite.onnx   the same signature, a linear model (the peak-hour fallback)
        Retail recommendations on synthetic shoppers: each has a hidden taste
        vector; `history` is the share of their last 20-80 events in each of
        64 product categories; the label is which of 10 promoted products they
        buy, drawn from the same tastes plus Gumbel noise. Accuracy is top-1
        and top-3 hit rate. recs uses only ops that a tpu target accepts.
    triage.onnx      image fp32[batch,1,8,8] -> finding fp32[batch,10]
        Stand-in for an imaging triage model: scikit-learn's bundled 8x8
        grey-scale digits as single-channel scans, ten findings. Flatten,
        scaler and an MLP(64).
    obstacle.onnx    ranges fp32[batch,32] -> hazard fp32[batch,4]
        Obstacle detection on a robot's range sensor: 32 beams over the front
        half-circle, a far wall, up to three objects, sensor noise and dropped
        beams (read as the 8 m maximum). The hazard (clear, left, ahead, right)
        is where the nearest object closer than 1.2 m lies, any such object
        ahead taking priority. Div (proximity = 1 / range; the sensor reports
        at least 0.05 m), scaler and an MLP(64, 32).

Run `python specs/build_models.py [--out DIR]`; it prints one line a model.
"""

from __future__ import annotations

import argparse
import pathlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

HERE = pathlib.Path(__file__).resolve().parent
TICKETS = HERE / "data" / "tickets.tsv"
SEED = 20240607
OPSET = 17
IR_VERSION = 8  # the IR of opset 17, so that older onnxruntime releases load the files
TOKEN = "[a-z0-9]+"  # one token pattern for training and for the graph's Tokenizer
INTENTS = (
    "refund",
    "lost-card",
    "card-declined",
    "dispute-charge",
    "password-reset",
    "account-locked",
    "update-details",
    "cancel-subscription",
    "invoice-copy",
    "transfer-status",
    "fees-question",
    "close-account",
)
VERDICTS = ("legit", "fraud")
PRODUCTS = tuple(f"product-{i}" for i in range(10))
FINDINGS = tuple(f"finding-{i}" for i in range(10))
HAZARDS = ("clear", "left", "ahead", "right")


@dataclass(frozen=True)
class Built:
    """A finished model: its file name, its graph and what it scored on held-out data.

    `eval_inputs`, when set, is written as `<name>-eval.npz`: the held-out inputs.
    """

    name: str
    model: onnx.ModelProto
    accuracy: str
    eval_inputs: dict[str, np.ndarray] | None = None


class Graph:
    """The nodes and weights of one graph, with generated names for the values between them."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []

    def const(self, array: np.ndarray) -> str:
        name = f"w{len(self.weights)}"
        self.weights.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str = "", **attrs: object) -> str:
        out = out or f"{op_type.lower()}{len(self.nodes)}"
        domain = attrs.pop("domain", "")
        self.nodes.append(helper.make_node(op_type, inputs, [out], domain=domain, **attrs))
        return out

    def scale(self, x: str, scaler: StandardScaler) -> str:
        """StandardScaler as `(x - mean) * (1 / scale)`."""
        return self.op(
            "Mul", [self.op("Sub", [x, self.const(scaler.mean_)]), self.const(1.0 / scaler.scale_)]
        )

    def dense(self, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        return self.op("Add", [self.op("MatMul", [x, self.const(weight)]), self.const(bias)])

    def mlp(self, x: str, net: MLPClassifier) -> str:
        """An MLPClassifier's ReLU layers; returns the logits, two columns for two classes."""
        layers = list(zip(net.coefs_, net.intercepts_, strict=True))
        for weight, bias in layers[:-1]:
            x = self.op("Relu", [self.dense(x, weight, bias)])
        return self.dense(x, *_two_columns(*layers[-1]))

    def model(
        self, doc: str, inputs: list, outputs: list, *, labels: tuple[str, ...], text: bool = False
    ) -> onnx.ModelProto:
        """The finished model; `labels` name the output's columns in its metadata."""
        graph = helper.make_graph(self.nodes, "main", inputs, outputs, initializer=self.weights)
        opsets = [helper.make_opsetid("", OPSET)]
        if text:
            opsets.append(helper.make_opsetid("com.microsoft", 1))
        model = helper.make_model(
            graph,
            opset_imports=opsets,
            ir_version=IR_VERSION,
            producer_name="inferplane specs/build_models.py",
            doc_string=doc,
        )
        helper.set_model_props(model, {"labels": ",".join(labels)})
        onnx.checker.check_model(model, full_check=True)
        return model


def _two_columns(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A binary model's single logit z as logits [0, z]: their softmax is [1 - σ(z), σ(z)]."""
    if weight.shape[1] != 1:
        return weight, bias
    return np.hstack([np.zeros_like(weight), weight]), np.concatenate([[0.0], bias])


def _fp32(name: str, *dims: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *dims])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _accuracy(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(_run(model, x).argmax(axis=1) == y))


def _split(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    return train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)


def _mlp(
    hidden: tuple[int, ...], x: np.ndarray, y: np.ndarray, alpha: float = 1e-3
) -> MLPClassifier:
    net = MLPClassifier(hidden, alpha=alpha, max_iter=2000, random_state=SEED)
    return net.fit(x, y)


def build_fraud() -> list[Built]:
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = _split(data.data, 1 - data.target)  # 1 = malignant
    scaler = StandardScaler().fit(x_train)
    z_train = scaler.transform(x_train)
    x_test = x_test.astype(np.float32)
    signature = ([_fp32("features", 30)], [_fp32("score", 2)])
    built, nets = [], []
    for name, hidden, doc in (
        ("fraud", (32,), "fraud scorer: StandardScaler + MLP(32) on breast-cancer as stand-in"),
        ("fraud-v4", (64, 32), "fraud scorer v4: StandardScaler + MLP(64, 32), the canary"),
    ):
        net = _mlp(hidden, z_train, y_train)
        nets.append(net)
        g = Graph()
        g.op("Softmax", [g.mlp(g.scale("features", scaler), net)], "score", axis=-1)
        model = g.model(doc, *signature, labels=VERDICTS)
        accuracy = f"held-out accuracy {_accuracy(model, x_test, y_test):.3f}"
        held_out = {"features": x_test} if name == "fraud" else None
        built.append(Built(name, model, accuracy, held_out))
    # Distillation: the student sees the teacher's answers on the training rows, not the labels.
    student = LogisticRegression(max_iter=1000, random_state=SEED)
    student.fit(z_train, nets[0].predict(z_train))
    g = Graph()
    logits = g.dense(
        g.scale("features", scaler), *_two_columns(student.coef_.T, student.intercept_)
    )
    g.op("Softmax", [logits], "score", axis=-1)
    model = g.model(
        "fraud-lite: logistic regression distilled from fraud", *signature, labels=VERDICTS
    )
    agree = np.mean(_run(model, x_test).argmax(1) == _run(built[0].model, x_test).argmax(1))
    accuracy = (
        f"held-out accuracy {_accuracy(model, x_test, y_test):.3f}, agrees with fraud {agree:.3f}"
    )
    return [*built, Built("fraud-lite", model, accuracy)]


def _read_tickets(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line]
    labels = np.array([INTENTS.index(intent) for intent, _ in rows])
    return np.array([text for _, text in rows], dtype=object), labels


def build_intent(tickets: pathlib.Path = TICKETS) -> list[Built]:
    texts, labels = _read_tickets(tickets)
    x_train, x_test, y_train, y_test = _split(texts, labels)
    counts = CountVectorizer(lowercase=True, token_pattern=TOKEN)
    features = counts.fit_transform(x_train)
    vocabulary = [str(word) for word in counts.get_feature_names_out()]
    clf = LogisticRegression(C=3.0, max_iter=2000, random_state=SEED).fit(features, y_train)
    g = Graph()
    # Locale "C" exists on every system; the default, en_US.UTF-8, fails where it is not
    # installed. It lower-cases ASCII, which is all the vocabulary holds.
    lower = g.op("StringNormalizer", ["text"], case_change_action="LOWER", locale="C")
    # `mark` adds begin/end tokens so an empty text still yields a row of width > 0.
    tokens = g.op(
        "Tokenizer",
        [lower],
        domain="com.microsoft",
        mark=1,
        mincharnum=1,
        pad_value="#",
        tokenexp=TOKEN,
    )
    tf = g.op(
        "TfIdfVectorizer",
        [tokens],
        mode="TF",
        min_gram_length=1,
        max_gram_length=1,
        max_skip_count=0,
        ngram_counts=[0],
        ngram_indexes=list(range(len(vocabulary))),
        pool_strings=vocabulary,
    )
    g.op("Softmax", [g.dense(tf, clf.coef_.T, clf.intercept_)], "intent", axis=-1)
    model = g.model(
        "support-ticket intent: unigram counts + logistic regression; labels " + ",".join(INTENTS),
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [_fp32("intent", len(INTENTS))],
        labels=INTENTS,
        text=True,
    )
    accuracy = (
        f"held-out accuracy {_accuracy(model, x_test, y_test):.3f}, "
        f"training {_accuracy(model, x_train, y_train):.3f}"
    )
    return [Built("intent", model, accuracy)]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _shoppers(n: int = 6000, tastes: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    categories, products = rng.normal(size=(64, tastes)), rng.normal(size=(10, tastes))
    users = rng.normal(size=(n, tastes))
    events = rng.integers(20, 81, size=n)
    history = rng.multinomial(events, _softmax(users @ categories.T)) / events[:, None]
    bought = np.argmax(users @ products.T + 0.5 * rng.gumbel(size=(n, 10)), axis=1)
    return history, bought


def build_recs() -> list[Built]:
    x_train, x_test, y_train, y_test = _split(*_shoppers())
    scaler = StandardScaler().fit(x_train)
    x_test = x_test.astype(np.float32)
    signature = ([_fp32("history", 64)], [_fp32("ranking", 10)])
    net = _mlp((64,), scaler.transform(x_train), y_train, alpha=1.0)  # the signal is near linear
    g = Graph()
    g.op("Softmax", [g.mlp(g.scale("history", scaler), net)], "ranking", axis=-1)
    recs = g.model(
        "recommendations: StandardScaler + MLP(64) over 10 products", *signature, labels=PRODUCTS
    )
    lite = LogisticRegression(max_iter=1000, random_state=SEED)
    lite.fit(scaler.transform(x_train), y_train)
    g = Graph()
    g.op(
        "Softmax",
        [g.dense(g.scale("history", scaler), lite.coef_.T, lite.intercept_)],
        "ranking",
        axis=-1,
    )
    recs_lite = g.model(
        "recommendations, peak-hour fallback: logistic regression", *signature, labels=PRODUCTS
    )
    built = []
    for name, model in (("recs", recs), ("recs-lite", recs_lite)):
        ranked = np.argsort(-_run(model, x_test), axis=1)
        top1 = np.mean(ranked[:, 0] == y_test)
        top3 = np.mean((ranked[:, :3] == y_test[:, None]).any(axis=1))
        held_out = {"history": x_test} if name == "recs" else None
        built.append(Built(name, model, f"held-out top-1 {top1:.3f}, top-3 {top3:.3f}", held_out))
    return built


def build_triage() -> list[Built]:
    digits = load_digits()
    x_train, x_test, y_train, y_test = _split(digits.data, digits.target)
    scaler = StandardScaler().fit(x_train)
    net = _mlp((64,), scaler.transform(x_train), y_train)
    g = Graph()
    flat = g.op("Flatten", ["image"], axis=1)
    g.op("Softmax", [g.mlp(g.scale(flat, scaler), net)], "finding", axis=-1)
    model = g.model(
        "imaging triage: 8x8 scans (digits as stand-in) -> Flatten + MLP(64)",
        [_fp32("image", 1, 8, 8)],
        [_fp32("finding", 10)],
        labels=FINDINGS,
    )
    images = x_test.reshape(-1, 1, 8, 8).astype(np.float32)
    accuracy = f"held-out accuracy {_accuracy(model, images, y_test):.3f}"
    return [Built("triage", model, accuracy, {"image": images})]


def _scans(n: int = 6000, beams: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED + 1)
    angles = np.linspace(-np.pi / 2, np.pi / 2, beams)
    wall = rng.uniform(2.0, 8.0, size=(n, 1))
    ranges = np.minimum(wall / np.maximum(np.cos(angles), 1e-3), 8.0)
    for _ in range(3):
        present = rng.random((n, 1)) < 0.6
        where = rng.uniform(-np.pi / 2, np.pi / 2, size=(n, 1))
        distance = rng.uniform(0.3, 4.0, size=(n, 1))
        half_width = np.arctan2(rng.uniform(0.1, 0.4, size=(n, 1)), distance)
        hit = present & (np.abs(angles - where) <= half_width)
        ranges = np.where(hit, np.minimum(ranges, distance), ranges)
    danger = ranges < 1.2
    nearest = np.argmin(np.where(danger, ranges, np.inf), axis=1)
    ahead = (danger & (np.abs(angles) <= np.pi / 6)).any(axis=1)
    side = np.where(angles[nearest] < 0, HAZARDS.index("left"), HAZARDS.index("right"))
    label = np.where(ahead, HAZARDS.index("ahead"), np.where(danger.any(axis=1), side, 0))
    noisy = ranges + rng.normal(0.0, 0.03, size=ranges.shape)
    noisy = np.where(rng.random(ranges.shape) < 0.02, 8.0, noisy)  # dropped beams read max range
    return np.clip(noisy, 0.05, 8.0), label


def build_obstacle() -> list[Built]:
    x_train, x_test, y_train, y_test = _split(*_scans())
    # The net sees proximity, 1 / range: a near object then stands out from the far wall
    # (held-out accuracy 0.87 on raw ranges, 0.96 on proximity).
    scaler = StandardScaler().fit(1.0 / x_train)
    net = _mlp((64, 32), scaler.transform(1.0 / x_train), y_train)
    g = Graph()
    proximity = g.op("Div", [g.const(np.ones(1)), "ranges"])
    g.op("Softmax", [g.mlp(g.scale(proximity, scaler), net)], "hazard", axis=-1)
    model = g.model(
        "obstacle detection on a 32-beam range scan; hazards " + ",".join(HAZARDS),
        [_fp32("ranges", 32)],
        [_fp32("hazard", len(HAZARDS))],
        labels=HAZARDS,
    )
    ranges = x_test.astype(np.float32)
    accuracy = _accuracy(model, ranges, y_test)
    return [Built("obstacle", model, f"held-out accuracy {accuracy:.3f}", {"ranges": ranges})]


BUILDERS = (build_fraud, build_intent, build_recs, build_triage, build_obstacle)


def _signature(model: onnx.ModelProto) -> str:
    def describe(values: list[onnx.ValueInfoProto]) -> str:
        out = []
        for value in values:
            kind = value.type.tensor_type
            dims = [d.dim_param or str(d.dim_value) for d in kind.shape.dim]
            dtype = "bytes" if kind.elem_type == TensorProto.STRING else "fp32"
            out.append(f"{value.name} {dtype}[{', '.join(dims)}]")
        return ", ".join(out)

    return f"{describe(model.graph.input)} -> {describe(model.graph.output)}"


def write_npz(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez` with the same bytes every run: members dated 1980-01-01, stored."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(member, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def build_all(
    out_dir: pathlib.Path, report: Callable[[str], None] | None = None
) -> list[pathlib.Path]:
    """Write every model (and evaluation set) into `out_dir`; `report` gets a line each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for builder in BUILDERS:
        for built in builder():
            path = out_dir / f"{built.name}.onnx"
            path.write_bytes(built.model.SerializeToString())
            paths.append(path)
            if report:
                report(f"{path.name:<18} {_signature(built.model):<58} {built.accuracy}")
            if built.eval_inputs is not None:
                held_out = out_dir / f"{built.name}-eval.npz"
                write_npz(held_out, built.eval_inputs)
                paths.append(held_out)
                if report:
                    samples = len(next(iter(built.eval_inputs.values())))
                    report(f"{held_out.name:<18} {samples} held-out samples, inputs only")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=HERE / "models",
        help="folder for the .onnx files (default: specs/models)",
    )
    args = parser.parse_args(argv)
    build_all(args.out, report=print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
