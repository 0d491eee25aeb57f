"""The --report PNG: score against answer length, and answer vs reference length histograms."""

from __future__ import annotations

from pathlib import Path

from eval.results import Evaluation

REPORT_NAME = "report.png"


def write_report(evaluation: Evaluation, folder: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    from matplotlib import pyplot as plt

    rows = evaluation.rows
    answer = [row.answer_tokens for row in rows]
    reference = [row.reference_tokens for row in rows]
    figure, (scores, lengths) = plt.subplots(1, 2, figsize=(12, 4.5))
    scores.scatter(answer, [row.cjk for row in rows], s=10, alpha=0.6, label="cjk")
    scores.scatter(answer, [row.official for row in rows], s=10, alpha=0.6, label="official")
    scores.set(xlabel="answer tokens", ylabel="RougeL F1", title="score against answer length")
    scores.legend()
    bins = min(40, max(5, len(rows) // 5))
    lengths.hist([answer, reference], bins=bins, label=["predictions", "references"])
    lengths.set(xlabel="tokens", ylabel="answers", title="answer lengths")
    lengths.legend()
    figure.suptitle(
        f"n={len(rows)}  official={evaluation.official:.4f}  cjk={evaluation.cjk:.4f}  "
        f"{evaluation.throughput.wall_rate:.1f} tok/s wall"
    )
    figure.tight_layout()
    path = Path(folder) / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
