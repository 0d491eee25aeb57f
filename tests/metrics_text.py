"""Reading the server's /metrics text in tests: each sample by name and labels, and how much
each one moved between two reads."""

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple], float]


def scrape(text: str) -> Samples:
    families = text_string_to_metric_families(text)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


def growth(before: Samples, after: Samples) -> Callable[..., float]:
    """``grew(name, **labels)``: how much that sample rose from ``before`` to ``after``."""

    def grew(name: str, **labels: str) -> float:
        sample = (name, tuple(sorted(labels.items())))
        return after.get(sample, 0) - before.get(sample, 0)

    return grew
