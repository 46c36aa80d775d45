"""The `Metrics` object: names, labels and buckets, read back through Prometheus's own parser.

No socket: `render()` is what `/metrics` serves (the HTTP side is scraped in
tests/integration/test_serve.py).
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferplane.gateway.metrics import (
    BATCH_BUCKETS,
    LATENCY_BUCKETS_S,
    Metrics,
    NullMetrics,
    replica_label,
    split_address,
)


def samples(metrics: Metrics) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) → value, from the text exposition format."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def labels(**kw: str) -> frozenset:
    return frozenset(kw.items())


def test_each_metric_has_its_name_type_and_labels():
    m = Metrics()
    m.request_done("fraud-scorer", "1", "OK", 0.003, route="payments")
    m.request_done("fraud-scorer", "1", "RESOURCE_EXHAUSTED", 0.0001)
    m.batch("fraud-scorer", "laptop", 7)
    m.queue_depth("fraud-scorer", 3)
    m.worker_up("laptop", "laptop-0", True)
    m.worker_up("laptop", "laptop-1", False)
    m.slo_violation("fraud-scorer", "p99")
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    # (prometheus_client also writes a `*_created` gauge per counter and histogram.)
    kinds = {name: f.type for name, f in families.items() if not name.endswith("_created")}
    assert kinds == {
        "inferplane_requests": "counter",
        "inferplane_request_duration_seconds": "histogram",
        "inferplane_batch_size": "histogram",
        "inferplane_queue_depth": "gauge",
        "inferplane_worker_up": "gauge",
        "inferplane_slo_violations": "counter",
    }
    got = samples(m)
    ok = labels(model="fraud-scorer", version="1", route="payments", code="OK")
    refused = labels(model="fraud-scorer", version="1", route="", code="RESOURCE_EXHAUSTED")
    assert got["inferplane_requests_total", ok] == 1
    assert got["inferplane_requests_total", refused] == 1
    per_model = dict(model="fraud-scorer", version="1")
    assert got["inferplane_request_duration_seconds_count", labels(**per_model)] == 2
    assert got["inferplane_batch_size_sum", labels(model="fraud-scorer", target="laptop")] == 7
    assert got["inferplane_queue_depth", labels(model="fraud-scorer")] == 3
    assert got["inferplane_worker_up", labels(target="laptop", replica="laptop-0")] == 1
    assert got["inferplane_worker_up", labels(target="laptop", replica="laptop-1")] == 0
    assert got["inferplane_slo_violations_total", labels(model="fraud-scorer", slo="p99")] == 1


def test_histograms_have_the_documented_buckets():
    m = Metrics()
    m.request_done("m", "1", "OK", 0.004)
    m.batch("m", "t", 3)
    got = samples(m)

    def bucket(name: str, le: str, **kw: str) -> float:
        return got[f"{name}_bucket", labels(le=le, **kw)]

    assert LATENCY_BUCKETS_S[0] == 0.0005 and LATENCY_BUCKETS_S[-1] == 10.0
    assert BATCH_BUCKETS == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    les = {dict(k)["le"] for (name, k) in got if name == "inferplane_batch_size_bucket"}
    assert les == {"1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "128.0", "256.0",
                   "512.0", "1024.0", "+Inf"}  # fmt: skip
    # 4 ms lands in the 5 ms bucket and above, not in the 2 ms one.
    assert bucket("inferplane_request_duration_seconds", "0.002", model="m", version="1") == 0
    assert bucket("inferplane_request_duration_seconds", "0.005", model="m", version="1") == 1
    assert bucket("inferplane_request_duration_seconds", "+Inf", model="m", version="1") == 1
    # 3 rows: in the 4 bucket, not in the 2 one.
    assert bucket("inferplane_batch_size", "2.0", model="m", target="t") == 0
    assert bucket("inferplane_batch_size", "4.0", model="m", target="t") == 1


def test_each_metrics_object_has_its_own_registry():
    first, second = Metrics(), Metrics()  # the global registry would refuse the second
    first.request_done("m", "1", "OK", 0.001)
    assert ("inferplane_requests_total", labels(model="m", version="1", route="", code="OK")) in (
        samples(first)
    )
    assert not any(name == "inferplane_requests_total" for name, _ in samples(second))


def test_a_worker_coming_back_sets_the_same_series_again():
    m = Metrics()
    m.worker_up("laptop", "laptop-0", True)
    m.worker_up("laptop", "laptop-0", False)
    m.worker_up("laptop", "laptop-0", True)
    ups = [k for name, k in samples(m) if name == "inferplane_worker_up"]
    assert ups == [labels(target="laptop", replica="laptop-0")]


def test_null_metrics_accept_every_call():
    # Every call the gateway makes on Metrics must exist on the stand-in too.
    recorded = {
        name
        for name in dir(Metrics)
        if not name.startswith("_")
        and name not in ("render", "start_http", "stop_http")
        and callable(getattr(Metrics, name))
    }
    assert {"request_done", "batch", "queue_depth", "worker_up", "slo_violation"} <= recorded
    assert recorded <= {name for name in dir(NullMetrics) if not name.startswith("_")}
    n = NullMetrics()
    n.request_done("m", "1", "OK", 0.1)
    n.batch("m", "t", 1)
    n.queue_depth("m", 0)
    n.worker_up("t", "r", True)
    n.slo_violation("m", "p99")


@pytest.mark.parametrize(
    ("endpoint", "label"),
    [
        ("unix:/tmp/infc-serve-x1/laptop-0.sock", "laptop-0"),
        ("unix:///tmp/w/gpu-pool-2.sock", "gpu-pool-2"),
        ("10.0.0.5:9000", "10.0.0.5:9000"),
    ],
)
def test_replica_labels_are_worker_names_or_endpoints(endpoint, label):
    assert replica_label(endpoint) == label


@pytest.mark.parametrize(
    ("listen", "parsed"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_addresses_split_into_host_and_port(listen, parsed):
    assert split_address(listen) == parsed


@pytest.mark.parametrize("listen", ["9464", ":9464", "host:", "host:port", "host:70000"])
def test_bad_addresses_are_refused(listen):
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_address(listen)
