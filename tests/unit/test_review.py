"""The human review of a plan (`infc plan`), on a plan built by hand.

`sample_plan()` is a realistic plan (the payments example, cut down); the diff
tests import it too.
"""

from __future__ import annotations

import re

from inferplane.compiler.diagnostics import BELOW_LATENCY, OVER_CAPACITY, Diagnostic
from inferplane.compiler.plan import (
    Agreement,
    Artifact,
    Batching,
    Capacity,
    Estimate,
    Gateway,
    LatencyObjective,
    Location,
    Model,
    ModelRef,
    Plan,
    Privacy,
    Redaction,
    ReplicaRange,
    Route,
    RouteEntry,
    Shard,
    Signature,
    Slos,
    Target,
    TensorSpec,
    Tls,
)
from inferplane.compiler.review import ANSI, PLAIN, render_plan, table
from inferplane.compiler.spans import Span

WIDTH = 80
ANSI_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


def estimate(fixed_s: float, per_item_s: float, batch: int, basis: str = "estimated") -> Estimate:
    largest = fixed_s + batch * per_item_s
    return Estimate(
        basis=basis,
        detail="2.1 MFLOP/item at 40 GFLOP/s (cpu, fp32)"
        if basis == "estimated"
        else "infc profile at batch 1, 8, 64",
        flops_per_item=2.1e6,
        fixed_s=fixed_s,
        per_item_s=per_item_s,
        single_latency_s=fixed_s + per_item_s,
        max_batch_latency_s=largest,
        capacity_rps=batch / largest,
    )


def shard(
    target: str,
    weight: int,
    share: float,
    replicas: tuple[int, int],
    batch: int,
    window_s: float,
    est: Estimate,
) -> Shard:
    return Shard(
        target=target,
        weight=weight,
        share=share,
        replicas=ReplicaRange(min=replicas[0], max=replicas[1]),
        batching=Batching(max_batch_size=batch, window_s=window_s, adaptive=True),
        estimate=est,
    )


def tensor(name: str, datatype: str, *dims: int) -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype, shape=list(dims))


FRAUD3_INT8 = Artifact(
    path=".inferplane/cache/ab12ab12ab12ab12-int8-pc7-ort1.32.0.onnx", sha256="9f8e" * 16
)
FRAUD3_AGREEMENT = Agreement(
    eval="models/fraud-eval.npz",
    samples=143,
    batch_size=64,
    top1_agreement=142 / 143,
    max_abs_diff=0.0213,
)


def fraud_model(version: int, shards: list[Shard], slos: Slos, privacy: Privacy) -> Model:
    """Version 3 is int8 (built, measured); version 4 fp32 (the source is the artifact)."""
    source = Artifact(path=f"models/fraud-v{version}.onnx", sha256="ab12" * 16)
    return Model(
        name="fraud-scorer",
        version=version,
        precision="int8" if version == 3 else "fp32",
        source=source,
        artifact=FRAUD3_INT8 if version == 3 else source,
        agreement=FRAUD3_AGREEMENT if version == 3 else None,
        signature=Signature(
            inputs=[tensor("features", "FP32", -1, 30)],
            outputs=[tensor("score", "FP32", -1, 2)],
        ),
        shards=shards,
        slos=slos,
        privacy=privacy,
        capacity=Capacity(
            capacity_rps=12_300.0,
            single_latency_s=max(s.estimate.single_latency_s for s in shards),
            basis=shards[0].estimate.basis,
        ),
    )


def sample_plan() -> Plan:
    """Two targets; fraud-scorer @3 and @4, fraud-lite, support-intent; one route."""
    on_prem = Privacy(on_prem_only=True)
    fraud3 = fraud_model(
        3,
        [
            shard("cpu-fra", 1, 0.25, (2, 8), 64, 0.002, estimate(2e-4, 2e-5, 64)),
            shard("gpu-fra", 3, 0.75, (1, 4), 64, 0.002, estimate(4e-4, 1e-6, 64)),
        ],
        Slos(
            latency=[
                LatencyObjective(percentile="p50", seconds=0.005),
                LatencyObjective(percentile="p99", seconds=0.020),
            ],
            throughput_rps=5000.0,
            availability_percent=99.9,
        ),
        on_prem,
    )
    fraud4 = fraud_model(
        4,
        [shard("cpu-fra", 1, 1.0, (2, 8), 1, 0.0, estimate(2e-4, 2e-5, 1, "measured"))],
        Slos(),
        on_prem,
    )
    lite_shard = shard("cpu-fra", 1, 1.0, (2, 8), 32, 0.001, estimate(1e-4, 5e-6, 32))
    lite_file = Artifact(path="models/fraud-lite.onnx", sha256="cd34" * 16)
    lite = Model(
        name="fraud-lite",
        version=1,
        precision="fp32",
        source=lite_file,
        artifact=lite_file,
        signature=fraud3.signature,
        shards=[lite_shard],
        slos=Slos(latency=[LatencyObjective(percentile="p99", seconds=0.010)]),
        privacy=Privacy(),
        capacity=Capacity(
            capacity_rps=lite_shard.estimate.capacity_rps * 8,
            single_latency_s=lite_shard.estimate.single_latency_s,
            basis="estimated",
        ),
    )
    # Misses on purpose: batch-1 is 7ms against p99 5ms (✗), 7ms + a 10ms window
    # against p999 15ms (!), and 1.8k rps at max replicas against 5000 rps (✗).
    intent_shard = shard("cpu-fra", 1, 1.0, (2, 8), 8, 0.010, estimate(3e-3, 4e-3, 8))
    intent_file = Artifact(path="models/intent.onnx", sha256="sha256:" + "ef56" * 16)
    intent = Model(
        name="support-intent",
        version=1,
        precision="fp32",
        source=intent_file,
        artifact=intent_file,
        signature=Signature(
            inputs=[tensor("text", "BYTES", -1)],
            outputs=[tensor("intent", "FP32", -1, 12)],
        ),
        shards=[intent_shard],
        slos=Slos(
            latency=[
                LatencyObjective(percentile="p99", seconds=0.005),
                LatencyObjective(percentile="p999", seconds=0.015),
            ],
            throughput_rps=5000.0,
        ),
        privacy=Privacy(redactions=[Redaction(input="text", kinds=["email", "phone"])]),
        capacity=Capacity(
            capacity_rps=intent_shard.estimate.capacity_rps * 8,
            single_latency_s=0.007,
            basis="estimated",
        ),
    )
    return Plan(
        source="payments.infer",
        gateway=Gateway(
            listen="127.0.0.1:8001",
            metrics="127.0.0.1:9464",
            tls=Tls(
                cert="certs/gateway.pem", key="certs/gateway-key.pem", client_ca="certs/ca.pem"
            ),
            auth_tokens_env="INFERPLANE_TOKENS",
        ),
        targets=[
            Target(
                name="cpu-fra",
                hardware="cpu",
                threads=4,
                location=Location(kind="onprem", site="fra-dc1"),
                replicas=ReplicaRange(min=2, max=8),
            ),
            Target(
                name="gpu-fra",
                hardware="gpu",
                accelerator="A100",
                devices=2,
                location=Location(kind="onprem", site="fra-dc1"),
                replicas=ReplicaRange(min=1, max=4),
                workers=["gpu-0.fra.internal:9100", "gpu-1.fra.internal:9100"],
            ),
        ],
        models=[lite, fraud3, fraud4, intent],
        routes=[
            Route(
                name="payments",
                entries=[
                    RouteEntry(model="fraud-scorer", version=3, percent=90.0),
                    RouteEntry(model="fraud-scorer", version=4, percent=10.0),
                ],
                fallback=ModelRef(model="fraud-lite", version=1),
            )
        ],
    ).with_hash()


def sample_warnings() -> list[Diagnostic]:
    return [
        Diagnostic(
            OVER_CAPACITY,
            "throughput SLO 5000 rps is above the estimated capacity 1.83k rps",
            Span(60, 3, 60, 25),
            "payments.infer",
        ),
        Diagnostic(
            BELOW_LATENCY,
            "latency SLO p99 5ms is below the single-request latency 7ms",
            Span(58, 3, 58, 15),
        ),
    ]


def section(text: str, title: str) -> str:
    """The block of `text` that starts with the line `title`."""
    start = text.index("\n" + title + "\n") + 1
    end = text.find("\n\n", start)
    return text[start : end if end != -1 else len(text)]


def test_header_names_source_version_and_short_hash():
    plan = sample_plan()
    first = render_plan(plan).splitlines()[0]
    digest = plan.content_hash.removeprefix("sha256:")
    assert first == f"Plan for payments.infer (plan v1, {digest[:12]})"


def test_gateway_section():
    gw = section(render_plan(sample_plan()), "Gateway")
    assert "listen       127.0.0.1:8001" in gw
    assert "metrics      127.0.0.1:9464" in gw
    assert "on, mutual" in gw and "client CA certs/ca.pem" in gw
    assert "bearer tokens from $INFERPLANE_TOKENS" in gw
    assert "max message  64MiB" in gw


def test_gateway_defaults_read_off():
    plan = sample_plan().model_copy(update={"gateway": Gateway()})
    gw = section(render_plan(plan), "Gateway")
    assert "metrics      off" in gw
    assert "tls          off" in gw
    assert "auth         off" in gw


def test_targets_table_columns_align_and_list_workers():
    lines = section(render_plan(sample_plan()), "Targets (2)").splitlines()
    header, cpu, gpu, gpu_second = lines[1:]
    assert header.split() == ["name", "hardware", "location", "replicas", "workers"]
    assert cpu.split("  ")[1:] and "cpu, 4 threads" in cpu and 'onprem "fra-dc1"' in cpu
    assert cpu.rstrip().endswith("local") and "2..8" in cpu
    assert "gpu A100 ×2" in gpu and "1..4" in gpu
    assert gpu.endswith("gpu-0.fra.internal:9100")
    assert gpu_second.strip() == "gpu-1.fra.internal:9100"
    # every column starts at the same offset in every row
    col = header.index("workers")
    assert cpu[col:].startswith("local") and gpu[col:].startswith("gpu-0")
    assert gpu_second[col:].startswith("gpu-1")


def test_model_block_has_artifact_signature_shards_and_estimates():
    block = section(render_plan(sample_plan()), "Model fraud-scorer@3")
    assert "  source     models/fraud-v3.onnx  sha256 ab12ab12ab12" in block.splitlines()
    assert "  precision  int8, dynamic quantization of the fp32 source" in block.splitlines()
    assert "inputs     features FP32[batch, 30]" in block
    assert "outputs    score FP32[batch, 2]" in block
    rows = {line.split()[0]: line.split() for line in block.splitlines() if "adaptive" in line}
    assert rows["cpu-fra"][:4] == ["cpu-fra", "1", "25%", "2..8"]
    assert rows["gpu-fra"][:4] == ["gpu-fra", "3", "75%", "1..4"]
    assert "max 64, window 2ms, adaptive" in block
    assert "  estimated from the FLOPs table — cpu-fra: 2.1 MFLOP/item at 40 GFLOP/s" in block
    # cpu-fra: 64 / (0.2ms + 64 * 20us) = 43.2k rps per replica, 346k at 8 replicas
    speed = next(line for line in block.splitlines() if line.split()[:2] == ["cpu-fra", "220us"])
    assert speed.split() == ["cpu-fra", "220us", "1.48ms", "43.2k", "rps", "346k", "rps"]


def test_built_artifact_and_its_agreement_follow_the_source():
    lines = section(render_plan(sample_plan()), "Model fraud-scorer@3").splitlines()
    start = lines.index("  source     models/fraud-v3.onnx  sha256 ab12ab12ab12")
    # a long artifact path puts its hash on the next line; the agreement wraps under its label
    assert lines[start + 1 : start + 6] == [
        "  precision  int8, dynamic quantization of the fp32 source",
        "  artifact   .inferplane/cache/ab12ab12ab12ab12-int8-pc7-ort1.32.0.onnx",
        "             sha256 9f8e9f8e9f8e",
        "  agreement  top-1 as fp32 on 99.3% of 143 samples (batches of 64),",
        "             max |Δ| 0.021, eval models/fraud-eval.npz ✓",
    ]
    assert lines[start + 6].startswith("  inputs ")


def test_fp32_serves_its_source_and_has_no_agreement():
    block = section(render_plan(sample_plan()), "Model fraud-scorer@4").splitlines()
    assert "  precision  fp32" in block
    assert "  artifact   the source, as written" in block
    assert not any("agreement" in line for line in block)


def _fraud3(**changes) -> Plan:
    plan = sample_plan()
    old = plan.model("fraud-scorer", 3)
    models = [old.model_copy(update=changes) if m is old else m for m in plan.models]
    return plan.model_copy(update={"models": models})


def test_unmeasured_and_failing_agreements():
    unmeasured = section(render_plan(_fraud3(agreement=None)), "Model fraud-scorer@3")
    assert "  agreement  not measured: no eval set" in unmeasured.splitlines()
    # never rounded up to the 99% threshold: 98.99% reads 98.9% and gets ✗
    low = FRAUD3_AGREEMENT.model_copy(update={"top1_agreement": 0.9899})
    failing = section(render_plan(_fraud3(agreement=low)), "Model fraud-scorer@3")
    assert "98.9% of 143 samples" in failing
    assert "             max |Δ| 0.021, eval models/fraud-eval.npz ✗" in failing.splitlines()
    coloured = render_plan(_fraud3(agreement=low), style=ANSI)
    assert "eval models/fraud-eval.npz \x1b[31m✗\x1b[0m" in coloured


def test_fp16_and_bf16_say_what_they_make_of_the_source():
    fp16 = section(render_plan(_fraud3(precision="fp16")), "Model fraud-scorer@3")
    assert "fp16, converted from the fp32 source; fp32 inputs and outputs" in fp16
    plan = sample_plan()
    v4 = plan.model("fraud-scorer", 4)
    bf16 = plan.model_copy(
        update={"models": [v4.model_copy(update={"precision": "bf16"}), *plan.models]}
    )
    text = section(render_plan(bf16), "Model fraud-scorer@4")
    assert "bf16, cast from the fp32 source by the tpu runtime when it loads it" in text
    assert "  artifact   the source, as written" in text.splitlines()


def test_measured_basis_is_named():
    block = section(render_plan(sample_plan()), "Model fraud-scorer@4")
    assert "  measured by infc profile — cpu-fra: infc profile at batch 1, 8, 64" in block
    assert "none (max 1)" in block
    assert "  slos: none" in block.splitlines()


def test_passing_slos_are_checked():
    block = section(render_plan(sample_plan()), "Model fraud-scorer@3")
    slo = {line.split()[0]: line for line in block.splitlines() if line.startswith("    p")}
    assert slo["p99"].split() == ["p99", "20ms", "est.", "batch-1", "401us", "✓"]
    assert slo["p50"].endswith("✓")
    throughput = next(line for line in block.splitlines() if "throughput" in line)
    assert throughput.split() == [
        *["throughput", "5000", "rps", "capacity", "12.3k", "rps", "at", "max"],
        *["replicas", "✓"],
    ]
    availability = next(line for line in block.splitlines() if "availability" in line)
    assert availability.split() == ["availability", "99.9%", "not", "estimated"]


def test_failing_slos_are_marked():
    block = section(render_plan(sample_plan()), "Model support-intent@1")
    lines = block.splitlines()
    p99 = next(line for line in lines if line.strip().startswith("p99"))
    p999 = next(line for line in lines if line.strip().startswith("p999"))
    throughput = next(line for line in lines if line.strip().startswith("throughput"))
    assert p99.endswith("✗") and "est. batch-1 7ms" in p99
    assert p999.endswith("!") and "+ window = 17ms" in p999
    assert throughput.endswith("✗") and "capacity 1829 rps at max replicas" in throughput


def test_privacy_lines():
    text = render_plan(sample_plan())
    fraud = section(text, "Model fraud-scorer@3")
    assert " ".join(fraud.split()).endswith(
        "privacy on-prem-only — enforced by the compiler (shard locations) "
        "and the gateway (worker-reported location)"
    )
    intent = section(text, "Model support-intent@1")
    assert (
        "    email, phone in text — redacted by the gateway before the request leaves it"
        in intent.splitlines()
    )
    assert "  privacy: none" in section(text, "Model fraud-lite@1").splitlines()


def test_pattern_redactions_are_quoted():
    plan = sample_plan()
    intent = plan.model("support-intent", 1)
    assert intent is not None
    redact = Redaction(input="text", kinds=["email"], patterns=["ORD-[0-9]{8}"])
    changed = intent.model_copy(update={"privacy": Privacy(redactions=[redact])})
    models = [changed if m is intent else m for m in plan.models]
    text = render_plan(plan.model_copy(update={"models": models}))
    assert 'email, pattern "ORD-[0-9]{8}" in text — redacted' in text


def test_routes_section():
    lines = section(render_plan(sample_plan()), "Route payments").splitlines()
    assert [line.split() for line in lines[1:]] == [
        ["fraud-scorer@3", "90%"],
        ["fraud-scorer@4", "10%"],
        ["fallback", "fraud-lite@1"],
    ]


def test_warnings_and_summary():
    text = render_plan(sample_plan(), sample_warnings())
    lines = text.splitlines()
    assert (
        "warning[W0501]: throughput SLO 5000 rps is above the estimated capacity 1.83k rps "
        "(payments.infer:60:3)"
    ) in lines
    # a diagnostic without a file is placed in the plan's source
    assert lines[-3].endswith("(payments.infer:58:3)")
    assert lines[-2] == ""
    assert lines[-1] == "Plan: 2 targets, 3 models (4 versions), 1 route, 2 warnings."


def test_summary_singular_and_no_warnings():
    plan = sample_plan()
    one = plan.model_copy(update={"targets": plan.targets[:1], "models": plan.models[:1]})
    assert render_plan(one).splitlines()[-1] == (
        "Plan: 1 target, 1 model (1 version), 1 route, 0 warnings."
    )
    assert "warning[" not in render_plan(plan)


def test_sections_come_in_order():
    text = render_plan(sample_plan(), sample_warnings())
    marks = [
        "Plan for",
        "\nGateway\n",
        "\nTargets (2)\n",
        "\nModel fraud-lite@1\n",
        "\nModel fraud-scorer@3\n",
        "\nModel fraud-scorer@4\n",
        "\nModel support-intent@1\n",
        "\nRoute payments\n",
        "\nwarning[W0501]",
        "\nPlan: ",
    ]
    positions = [text.index(mark) for mark in marks]
    assert positions == sorted(positions)


def test_fits_in_80_columns():
    # warnings keep their one-line form whatever their length
    for line in render_plan(sample_plan()).splitlines():
        assert len(line) <= WIDTH, line


def test_deterministic():
    assert render_plan(sample_plan(), sample_warnings()) == render_plan(
        sample_plan(), sample_warnings()
    )


def test_plain_has_no_escapes_and_ansi_adds_them():
    plain = render_plan(sample_plan(), sample_warnings(), PLAIN)
    coloured = render_plan(sample_plan(), sample_warnings(), ANSI)
    assert "\x1b[" not in plain
    assert "\x1b[32m✓\x1b[0m" in coloured
    assert "\x1b[31m✗\x1b[0m" in coloured
    assert "\x1b[33mwarning\x1b[0m[W0501]" in coloured
    # stripping the escapes gives the plain text back, alignment included
    assert ANSI_ESCAPES.sub("", coloured) == plain


def test_table_aligns_on_visible_width():
    lines = table([[ANSI.red("a"), "b"], ["ccc", "d"]], indent=0)
    assert [ANSI_ESCAPES.sub("", line) for line in lines] == ["a    b", "ccc  d"]
