"""The P1 benchmark's throughput half: real and synthesised telegrams through our driver path and
bare dsmr-parser. Figures are only checked for plausibility, never against a time target."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gridedge.bench.p1 import (
    DATA_DIR,
    Throughput,
    bare_parser_throughput,
    driver_path_throughput,
    run,
    sample_telegrams,
)
from gridedge.sim.p1 import corrupt_crc


class SteppingClock:
    """Advances one second per reading, so a timed loop runs a known number of rounds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_sample_holds_every_real_telegram_and_synthesised_ones() -> None:
    """Each capture in shared/data/p1 is in the sample, next to synthesised Fluvius telegrams."""
    telegrams, real = sample_telegrams(synthesised=3)
    assert real == len(list(DATA_DIR.glob("*.txt"))) > 0
    assert len(telegrams) == real + 3
    assert all(t.startswith(b"/FLU") for t in telegrams[real:])


def test_sample_falls_back_to_synthesised_telegrams_without_the_shared_data(tmp_path: Path) -> None:
    """A checkout without shared/data still benchmarks, on synthesised telegrams only."""
    telegrams, real = sample_telegrams(data_dir=tmp_path / "missing", synthesised=2)
    assert real == 0 and len(telegrams) == 8


@pytest.mark.parametrize("measure", [driver_path_throughput, bare_parser_throughput])
def test_one_timed_round_counts_every_telegram(measure: Callable[..., Throughput]) -> None:
    """With a clock that jumps past the duration after one round, the count is one round's."""
    telegrams, _ = sample_telegrams(synthesised=2)
    result = measure(telegrams, seconds=1.0, clock=SteppingClock())
    assert (result.telegrams, result.seconds, result.per_s) == (len(telegrams), 1.0, len(telegrams))


def test_driver_path_refuses_to_benchmark_bad_telegrams() -> None:
    """A telegram our path drops (bad CRC) would time the error path: the bench says so instead."""
    telegrams, _ = sample_telegrams(synthesised=1)
    with pytest.raises(ValueError, match="refused"):
        driver_path_throughput([*telegrams, corrupt_crc(telegrams[0])], seconds=0.01)


@pytest.mark.parametrize(("telegrams", "seconds"), [(10, 1.0), (0, 0.5), (-1, 1.0), (5, 0.0)])
def test_throughput_validates(telegrams: int, seconds: float) -> None:
    """Counts are never negative and durations always positive."""
    if telegrams >= 0 and seconds > 0:
        assert Throughput(name="x", telegrams=telegrams, seconds=seconds).per_s == telegrams / seconds
    else:
        with pytest.raises(ValueError):
            Throughput(name="x", telegrams=telegrams, seconds=seconds)


def test_run_prints_both_rates_their_ratio_and_the_target(capsys: pytest.CaptureFixture[str]) -> None:
    """A short run without the site prints both paths, the ratio, the target line and JSON."""
    assert run(seconds=0.1, latency_samples=0, as_json=True) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("our driver path") for line in lines)
    assert any(line.startswith("bare dsmr-parser") for line in lines)
    assert any(line.startswith("ratio ours/bare dsmr-parser: ") for line in lines)
    assert any(line.startswith("target >= 1000 telegrams/s: ") for line in lines)
    figures = json.loads(out[out.index("\n{") :])
    throughput = figures["throughput"]
    assert throughput["ours_telegrams"] > 0 and throughput["bare_telegrams"] > 0
    assert throughput["ratio"] == pytest.approx(throughput["ours_per_s"] / throughput["bare_per_s"])
    assert "latency" not in figures


@pytest.mark.parametrize(
    "kwargs", [{"seconds": 0.0, "latency_samples": 0}, {"seconds": 1.0, "latency_samples": -1}]
)
def test_run_refuses_nonsense(kwargs: dict) -> None:
    """A zero duration or a negative sample count is refused before anything runs."""
    with pytest.raises(ValueError):
        run(as_json=False, **kwargs)
