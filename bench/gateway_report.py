"""The gateway benchmark's Markdown report: tables, ratios and the issue's targets.

Pure formatting over what `gateway_bench.py` measured (its `Result` rows,
the onnxruntime sweeps and the perf_analyzer cross-check); it prints and
asserts nothing. The targets are those of the gateway issue, each computed
from this one run and marked met or missed:

- closed loop at concurrency 1: the gateway's req/s at least 5× each peer's;
- concurrency 32, tiny model: at least Triton's req/s, with less server CPU
  per inference;
- concurrency 32, MLP: at least 1.5× Triton's inferences/s;
- batch-8 requests on the MLP: at least 50% of the in-process ceiling;
- the open-loop run: no request over the SLO.
"""

from __future__ import annotations

import math

from models import SLO_P99_MS

GATEWAY, NULL, PEERS = "gateway", "do-nothing", ("triton", "mlserver")


def _n(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _ratio(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.3f}" if value >= 0.01 else f"1/{_n(1 / value)}" if value > 0 else "0"


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def ceiling_table(sweeps) -> dict:
    """Print the onnxruntime sweeps; return each model's best row (its ceiling)."""
    best = {}
    print("\n### Compute ceiling: onnxruntime in process, one thread (two sweeps)\n")
    print("| model | batch | inf/s (before / after) | p50 per batch µs | CPU µs per inf |")
    print("|---|---|---|---|---|")
    for name, (before, after) in sweeps.items():
        for a, b in zip(before, after, strict=True):
            print(
                f"| {name} | {a.batch} | {_n(a.inf_s)} / {_n(b.inf_s)} | "
                f"{a.p50_us:.0f} / {b.p50_us:.0f} | {a.cpu_us_per_inf:.1f} / "
                f"{b.cpu_us_per_inf:.1f} |"
            )
        top = max([*before, *after], key=lambda row: row.inf_s)
        best[name] = top
        print(
            f"| **{name} ceiling** | **{top.batch}** | **{_n(top.inf_s)}** | | "
            f"**{top.cpu_us_per_inf:.1f}** |"
        )
    return best


def load_table(results) -> None:
    print("\n### Load phases (one client process; the same window for every row)\n")
    print(
        "| phase | model | system | req/s | inf/s | p50 ms | p99 ms | server CPU ms/inf | "
        "of which workers | client CPU ms/req | cores busy | mean batch | "
        "errors / SLO misses |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        run = r.run
        if run.offered:
            misses = f"{run.slo_misses}/{run.offered} > {SLO_P99_MS:g} ms"
            misses += f" ({100 * run.slo_misses / run.offered:.1f}%)"
        else:
            misses = ", ".join(f"{k} {v}" for k, v in run.errors.items()) or "0"
        batch = f"{r.mean_batch:.1f}" if r.mean_batch is not None else ""
        print(
            f"| {r.phase.name} | {r.model.name} | {r.system} | {_n(run.req_s)} | "
            f"{_n(run.inf_s)} | {_ms(run.percentile_ms(50))} | {_ms(run.percentile_ms(99))} | "
            f"{r.server_cpu_ms_per_inf:.3f} | "
            f"{r.server_cpu_ms_per_inf - r.front_cpu_ms_per_inf:.3f} | "
            f"{r.client_cpu_ms_per_req:.3f} | {100 * r.host_busy:.0f}% | {batch} | {misses} |"
        )


def ratio_table(results, best: dict) -> None:
    by_key = {(r.phase.name, r.model.name, r.system): r for r in results}
    peers = [p for p in PEERS if any(r.system == p for r in results)]
    print("\n### Ratios (the gateway against each baseline, same phase and model)\n")
    head = "| phase | model | inf/s ÷ compute ceiling | req/s ÷ do-nothing |"
    head += "".join(f" req/s ÷ {p} | CPU/inf ÷ {p} |" for p in peers)
    print(head)
    print("|---|---|---|---|" + "---|---|" * len(peers))
    for r in results:
        if r.system != GATEWAY:
            continue
        null = by_key[(r.phase.name, r.model.name, NULL)]
        line = (
            f"| {r.phase.name} | {r.model.name} | "
            f"{_ratio(r.run.inf_s / best[r.model.name].inf_s)} | "
            f"{_div(r.run.req_s, null.run.req_s):.2f} |"
        )
        for p in peers:
            peer = by_key[(r.phase.name, r.model.name, p)]
            req = _div(r.run.req_s, peer.run.req_s)
            cpu = _div(r.server_cpu_ms_per_inf, peer.server_cpu_ms_per_inf)
            line += f" {req:.2f} | {cpu:.2f} |"
        print(line)


def targets(results, best: dict) -> list[tuple[str, str, bool | None]]:
    """(target, what was measured, met?) for each of the issue's targets; None
    when a baseline it needs is missing from this run."""
    by_key = {(r.phase.name, r.model.name, r.system): r for r in results}
    phase = {r.phase.name.split(",")[0]: r.phase.name for r in results}
    c1, c32 = phase.get("closed c=1"), phase.get("closed c=32")
    b8 = next((name for name in phase.values() if "batch 8" in name), None)
    opened = next((name for name in phase.values() if name.startswith("open")), None)

    def get(ph, model, system):
        return by_key.get((ph, model, system))

    out = []
    for model in ("tiny", "mlp"):
        for peer in PEERS:
            g, p = get(c1, model, GATEWAY), get(c1, model, peer)
            if p is None:
                out.append((f"c=1 {model}: ≥ 5× {peer} req/s", "no peer in this run", None))
                continue
            ratio = _div(g.run.req_s, p.run.req_s)
            what = f"{g.run.req_s:.0f} vs {p.run.req_s:.0f} req/s (×{ratio:.2f})"
            out.append((f"c=1 {model}: ≥ 5× {peer} req/s", what, ratio >= 5))
    g, t = get(c32, "tiny", GATEWAY), get(c32, "tiny", "triton")
    if t is None:
        out.append(("c=32 tiny: ≥ Triton req/s, less CPU/inf", "no Triton in this run", None))
    else:
        what = (
            f"{g.run.req_s:.0f} vs {t.run.req_s:.0f} req/s; CPU {g.server_cpu_ms_per_inf:.3f} "
            f"vs {t.server_cpu_ms_per_inf:.3f} ms/inf"
        )
        met = g.run.req_s >= t.run.req_s and g.server_cpu_ms_per_inf < t.server_cpu_ms_per_inf
        out.append(("c=32 tiny: ≥ Triton req/s, less CPU/inf", what, met))
    g, t = get(c32, "mlp", GATEWAY), get(c32, "mlp", "triton")
    if t is None:
        out.append(("c=32 mlp: ≥ 1.5× Triton inf/s", "no Triton in this run", None))
    else:
        ratio = _div(g.run.inf_s, t.run.inf_s)
        what = f"{g.run.inf_s:.0f} vs {t.run.inf_s:.0f} inf/s (×{ratio:.2f})"
        out.append(("c=32 mlp: ≥ 1.5× Triton inf/s", what, ratio >= 1.5))
    g = get(b8, "mlp", GATEWAY)
    share = g.run.inf_s / best["mlp"].inf_s
    what = f"{g.run.inf_s:.0f} of {best['mlp'].inf_s:.0f} inf/s ({100 * share:.0f}%)"
    out.append(("batch-8 mlp: ≥ 50% of the in-process ceiling", what, share >= 0.5))
    for model in ("tiny", "mlp"):
        g = get(opened, model, GATEWAY)
        what = f"{g.run.slo_misses} of {g.run.offered} over {SLO_P99_MS:g} ms"
        out.append((f"open loop {model}: no SLO misses", what, g.run.slo_misses == 0))
    return out


def target_table(results, best: dict) -> None:
    print("\n### The issue's targets, from this run\n")
    print("| target | measured | met |")
    print("|---|---|---|")
    for name, what, met in targets(results, best):
        mark = "–" if met is None else "yes" if met else "**no**"
        print(f"| {name} | {what} | {mark} |")


def cross_check_table(checks) -> None:
    if not checks:
        return
    print("\n### perf_analyzer (Triton's load generator) on the tiny model, batch 1\n")
    print("| system | concurrency | infer/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for system, concurrency, result in checks:
        print(
            f"| {system} | {concurrency} | {result['infer_s']:.0f} | "
            f"{result['p50_ms']:.2f} | {result['p99_ms']:.2f} |"
        )


def report(results, sweeps, checks=()) -> None:
    best = ceiling_table(sweeps)
    load_table(results)
    ratio_table(results, best)
    target_table(results, best)
    cross_check_table(checks)
