"""Merging requests into a batch and splitting the answer back, exactly and in order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferplane.gateway.tensor_batch import TensorBatchError, merge, rows_of, split


def texts(*items: bytes) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


def test_merge_concatenates_in_order_and_returns_offsets() -> None:
    a = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "id": np.array([1, 2])}
    b = {"x": np.full((1, 3), 9, dtype=np.float32), "id": np.array([3])}
    arrays, offsets = merge([a, b])
    assert offsets == (0, 2, 3)
    assert arrays["x"].shape == (3, 3)
    np.testing.assert_array_equal(arrays["x"][2], [9, 9, 9])
    np.testing.assert_array_equal(arrays["id"], [1, 2, 3])


def test_split_gives_each_request_exactly_its_rows() -> None:
    requests = [
        {"x": np.ones((1, 4), np.float32)},
        {"x": np.ones((3, 4), np.float32)},  # a request with its own batch of 3
        {"x": np.ones((2, 4), np.float32)},
    ]
    _, offsets = merge(requests)
    # A worker's answer: row i holds i, so every row's owner is visible.
    outputs = {
        "score": np.arange(6, dtype=np.float32)[:, None].repeat(2, axis=1),
        "label": np.arange(6, dtype=np.int64),
    }
    answers = split(outputs, offsets)
    assert len(answers) == 3
    assert [a["label"].tolist() for a in answers] == [[0], [1, 2, 3], [4, 5]]
    assert [a["score"].shape for a in answers] == [(1, 2), (3, 2), (2, 2)]


def test_bytes_tensors_go_through_unchanged() -> None:
    a = {"text": texts(b"card 4111 1111", "é".encode())}
    b = {"text": texts(b"")}
    arrays, offsets = merge([a, b])
    assert arrays["text"].dtype == object
    assert arrays["text"].tolist() == [b"card 4111 1111", "é".encode(), b""]
    back = split({"echo": arrays["text"]}, offsets)
    assert back[0]["echo"].tolist() == [b"card 4111 1111", "é".encode()]
    assert back[1]["echo"].tolist() == [b""]
    assert all(type(item) is bytes for item in back[0]["echo"])


def test_one_request_is_passed_through() -> None:
    x = np.zeros((2, 5), np.float32)
    arrays, offsets = merge([{"x": x}])
    assert arrays["x"] is x and offsets == (0, 2)


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([{"x": np.zeros((1, 3))}, {"x": np.zeros((1, 4))}], "only the first axis may differ"),
        ([{"x": np.zeros((1, 3))}, {"x": np.zeros((1, 3, 1))}], "only the first axis may differ"),
        (
            [{"x": np.zeros((1, 3), np.float32)}, {"x": np.zeros((1, 3), np.float64)}],
            "request 1 sends float64",
        ),
        ([{"x": np.zeros((1, 3))}, {"y": np.zeros((1, 3))}], "request 1 has inputs ['y']"),
        ([{"x": np.zeros((2, 3)), "m": np.zeros((1,))}], "inputs disagree on their rows"),
        ([{"x": np.float32(1.0)}], "no batch axis"),
        ([{"x": np.zeros((0, 3))}], "has no rows"),
        ([{}], "has no inputs"),
        ([], "no requests"),
    ],
)
def test_requests_that_cannot_share_a_batch(requests: list, message: str) -> None:
    with pytest.raises(TensorBatchError) as error:
        merge(requests)
    assert message in str(error.value)


def test_split_refuses_outputs_of_the_wrong_size() -> None:
    with pytest.raises(TensorBatchError, match="the batch has 3 rows"):
        split({"y": np.zeros((4, 2))}, (0, 1, 3))
    with pytest.raises(TensorBatchError, match="the batch has 3 rows"):
        split({"y": np.float32(0)}, (0, 3))
    with pytest.raises(TensorBatchError, match="start at 0"):
        split({"y": np.zeros(3)}, (1, 3))
    with pytest.raises(TensorBatchError, match="must not decrease"):
        split({"y": np.zeros(3)}, (0, 2, 1, 3))


def test_rows_of() -> None:
    assert rows_of({"a": np.zeros((4, 2)), "b": texts(*[b"x"] * 4)}) == 4


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, np.ndarray]]:
    count = draw(st.integers(1, 8))
    width = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = []
    for _ in range(count):
        rows = draw(st.integers(1, 5))
        words = texts(*(bytes(rng.integers(0, 256, size=int(n)).tolist()) for n in range(rows)))
        out.append(
            {
                "dense": rng.normal(size=(rows, width)).astype(np.float32),
                "index": rng.integers(-(2**40), 2**40, size=(rows, 1, 2)),
                "text": words,
            }
        )
    return out


@settings(max_examples=100, deadline=None)
@given(batches())
def test_merge_then_split_is_exact(requests: list[dict[str, np.ndarray]]) -> None:
    arrays, offsets = merge(requests)
    # An identity "model" answers with its inputs; each request gets its own back.
    answers = split(arrays, offsets)
    assert len(answers) == len(requests)
    for sent, got in zip(requests, answers, strict=True):
        assert set(got) == set(sent)
        for name in sent:
            assert got[name].dtype == sent[name].dtype
            assert got[name].shape == sent[name].shape
            np.testing.assert_array_equal(got[name], sent[name])
