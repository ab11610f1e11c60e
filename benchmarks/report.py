"""The benchmark's summary: medians per client, medians of per-repetition ratios, the issue-14 targets.

Two tables: the stdio proxy (``proxy`` against ``websocat``, the direct client and the import floor), and, when
the bridge case ran, ``serve`` against ``websocat-bridge`` (one WebSocket client through each bridge), with the
proxy's targets shown for comparison.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

from .run import SIZES, Samples

MiB = 1024 * 1024
TIMES = "\u00d7"
PRETTY = {"100B": "100 B", "1KiB": "1 KiB", "64KiB": "64 KiB", "1MiB": "1 MiB"}


@dataclass(frozen=True)
class Row:
    """One table row: *metric* for each client, and the proxy's ratio to a reference with its target."""

    label: str
    metric: str
    unit: str
    scale: float = 1.0
    reference: str = "websocat"  # ratio = proxy / this client's value, per repetition
    target: float | None = None
    higher_is_better: bool = True


ROWS = [
    Row("throughput 100 B", "msgs_per_s_100B", "msg/s", target=1.0),
    Row("throughput 1 KiB", "msgs_per_s_1KiB", "msg/s", target=1.0),
    Row("throughput 64 KiB", "mb_per_s_64KiB", "MB/s", target=2.0),
    Row("throughput 1 MiB", "mb_per_s_1MiB", "MB/s", target=2.0),
    Row("round trip p50, 200 B", "rtt_p50_us", "us", target=2.0, higher_is_better=False),
    Row("round trip p99, 200 B", "rtt_p99_us", "us", target=3.0, higher_is_better=False),
    *(
        Row(f"CPU per message, {pretty}", f"cpu_us_per_msg_{label}", "us", higher_is_better=False)
        for label, pretty in PRETTY.items()
    ),
    Row("startup (spawn to first echo)", "startup_ms", "ms", reference="floor", target=1.25, higher_is_better=False),
    Row(
        "peak RSS streaming (max of sizes)",
        "peak_rss_stream",
        "MiB",
        scale=1 / MiB,
        reference="floor",
        target=1.5,
        higher_is_better=False,
    ),
]
CLIENTS = ["direct", "floor", "websocat", "proxy"]

SERVE = "serve"
SERVE_REFERENCE = "websocat-bridge"
SERVE_CLIENTS = [SERVE_REFERENCE, SERVE]
#: The bridge case's rows: what the bridge measures, ratios to websocat as a bridge; targets as for the proxy.
SERVE_ROWS = [
    *(replace(row, reference=SERVE_REFERENCE) for row in ROWS if row.reference == "websocat"),
    Row("peak RSS streaming (max of sizes)", "peak_rss_stream", "MiB", 1 / MiB, SERVE_REFERENCE, None, False),
]


def _values(samples: Samples, client: str, metric: str) -> list[float | None]:
    """One value per repetition; None where the client stalled."""
    got = samples.get(client, {})
    if metric == "peak_rss_stream":
        if client == "floor":
            return list(got.get("peak_rss", []))
        per_size = [got.get(f"peak_rss_stream_{label}", []) for label in SIZES]
        return [max((v for v in values if v is not None), default=None) for values in zip(*per_size, strict=True)]
    return list(got.get(metric, []))


def _present(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _ratio(samples: Samples, row: Row, ours_name: str) -> float | None:
    ours, theirs = _values(samples, ours_name, row.metric), _values(samples, row.reference, row.metric)
    if len(ours) != len(theirs):
        return None
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if a is not None and b]
    return statistics.median(ratios) if ratios else None


def _summary_row(samples: Samples, row: Row, ours: str, clients: list[str]) -> dict[str, Any]:
    medians = {
        client: statistics.median(values) * row.scale
        for client in clients
        if (values := _present(_values(samples, client, row.metric)))
    }
    ratio = _ratio(samples, row, ours)
    holds = None
    if row.target is not None and ratio is not None:
        holds = ratio >= row.target if row.higher_is_better else ratio <= row.target
    return {
        "label": row.label,
        "metric": row.metric,
        "unit": row.unit,
        "medians": medians,
        "ratio": ratio,
        "ratio_to": row.reference,
        "target": row.target,
        "higher_is_better": row.higher_is_better,
        "holds": holds,
    }


def summarize(samples: Samples, big_message: int) -> dict[str, Any]:
    """Medians, ratios and targets as plain data (the JSON output and the table both come from it)."""
    rows = [_summary_row(samples, row, "proxy", CLIENTS) for row in ROWS]
    big = _present(_values(samples, "proxy", "peak_rss_big"))
    floor = _present(_values(samples, "floor", "peak_rss"))
    if big and len(big) == len(floor):
        over = statistics.median((b - f) / big_message for b, f in zip(big, floor, strict=True))
        rows.append(
            {
                "label": f"peak RSS, one {big_message // MiB} MiB message each way",
                "metric": "peak_rss_big",
                "unit": "MiB",
                "medians": {"floor": statistics.median(floor) / MiB, "proxy": statistics.median(big) / MiB},
                "ratio": over,
                "ratio_to": "message size, above the floor",
                "target": 3.0,
                "higher_is_better": False,
                "holds": over <= 3.0,
            }
        )
    echo = {
        client: max(
            v
            for key, values in samples.get(client, {}).items()
            if key.startswith("echo_cpu_share")
            for v in values
            if v is not None
        )
        for client in ("direct", "websocat", "proxy", *SERVE_CLIENTS)
        if client in samples
    }
    summary: dict[str, Any] = {"rows": rows, "echo_server_cpu_share_max": echo}
    if SERVE in samples:
        summary["serve_rows"] = [_summary_row(samples, row, SERVE, SERVE_CLIENTS) for row in SERVE_ROWS]
    return summary


def _number(value: float) -> str:
    if value >= 10_000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _table(rows: list[dict[str, Any]], clients: list[str], head: list[str], shares: dict[str, float]) -> list[str]:
    lines = [f"| metric | {' | '.join(head)} | ratio | target |", "|---" * (len(head) + 3) + "|"]
    for row in rows:
        cells = [f"{_number(row['medians'][c])} {row['unit']}" if c in row["medians"] else "—" for c in clients]
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}{TIMES} {row['ratio_to']}"
        target = "—"
        if row["target"] is not None:
            sign = "≥" if row["higher_is_better"] else "≤"
            verdict = "no ratio" if row["holds"] is None else "ok" if row["holds"] else "MISSED"
            target = f"{sign} {row['target']:g}{TIMES} {verdict}"
        lines.append(f"| {row['label']} | {' | '.join(cells)} | {ratio} | {target} |")
    cells = [f"{shares[c] * 100:.0f}% of a core" if c in shares else "—" for c in clients]
    lines.append(f"| echo server CPU share (max) | {' | '.join(cells)} | — | — |")
    return lines


def table(summary: dict[str, Any]) -> str:
    """Markdown tables of medians with the ratios and whether each target holds: the proxy's, then (when the
    bridge case ran) serve's, whose targets are the proxy's, shown for comparison."""
    shares = summary["echo_server_cpu_share_max"]
    head = ["direct (limit)", "import floor", "websocat", "proxy"]
    lines = _table(summary["rows"], CLIENTS, head, shares)
    if summary.get("serve_rows"):
        lines += [
            "",
            "serve bridge: one WebSocket client through the bridge to the same echo server (ratio: serve / websocat "
            "as a WebSocket-to-WebSocket bridge; targets as for the proxy)",
            "",
            *_table(summary["serve_rows"], SERVE_CLIENTS, ["websocat bridge", "serve"], shares),
        ]
    return "\n".join(lines)
