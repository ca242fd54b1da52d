"""PacedPty: a pty whose output leaves at the configured line rate."""

from __future__ import annotations

import os
import select
import time
import tty

import pytest

from gridedge.sim.serial_pacing import PacedPty


def receive(fd: int, count: int, timeout: float = 5.0) -> tuple[bytes, list[float]]:
    """Read ``count`` bytes, noting when each chunk arrived."""
    data = b""
    stamps: list[float] = []
    deadline = time.monotonic() + timeout
    while len(data) < count and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 4096)
            data += chunk
            stamps.extend([time.monotonic()] * len(chunk))
    return data, stamps


@pytest.fixture
def client_fd():
    opened: list[int] = []

    def open_port(path: str) -> int:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        opened.append(fd)
        return fd

    yield open_port
    for fd in opened:
        os.close(fd)


@pytest.mark.parametrize("baudrate,bits_per_byte", [(4800, 10), (9600, 11)])
def test_output_is_paced_to_the_line_rate(client_fd, baudrate: int, bits_per_byte: int) -> None:
    """Rule: n bytes take n * bits_per_byte / baudrate seconds to arrive, not zero.

    A functional check with generous bounds: never faster than the line (minus scheduling
    jitter), and not grossly slower.
    """
    with PacedPty(baudrate=baudrate, bits_per_byte=bits_per_byte) as pty:
        fd = client_fd(pty.port_path)
        payload = bytes(range(256))[:150]
        expected = len(payload) * bits_per_byte / baudrate
        start = time.monotonic()
        pty.write(payload)
        data, stamps = receive(fd, len(payload))
        elapsed = stamps[-1] - start
    assert data == payload
    assert elapsed >= 0.85 * expected, f"{elapsed:.3f}s for {expected:.3f}s of line time"
    assert elapsed <= 3.0 * expected + 0.3
    measured_rate = (len(payload) - 1) / (stamps[-1] - stamps[0])
    assert measured_rate <= 1.2 * baudrate / bits_per_byte


def test_short_burst_is_not_delivered_instantly(client_fd) -> None:
    """Rule: even a 5-byte frame takes its line time (about 52 ms at 960 baud)."""
    with PacedPty(baudrate=960) as pty:
        fd = client_fd(pty.port_path)
        start = time.monotonic()
        pty.write(b"\x01\x02\x03\x04\x05")
        data, stamps = receive(fd, 5)
    assert data == b"\x01\x02\x03\x04\x05"
    assert stamps[-1] - start >= 0.045


def test_drain_waits_for_the_queue(client_fd) -> None:
    with PacedPty(baudrate=2400) as pty:
        client_fd(pty.port_path)
        start = time.monotonic()
        pty.write(bytes(24))  # 100 ms of line time
        assert pty.drain(timeout=5.0)
        assert time.monotonic() - start >= 0.085
        pty.write(bytes(240))
        assert not pty.drain(timeout=0.05)


def test_baudrate_can_change(client_fd) -> None:
    with PacedPty(baudrate=1200) as pty:
        fd = client_fd(pty.port_path)
        pty.baudrate = 115200
        start = time.monotonic()
        pty.write(bytes(100))
        _, stamps = receive(fd, 100)
    assert stamps[-1] - start < 0.5  # at 1200 baud this would take 0.83 s


def test_read_returns_what_the_client_wrote(client_fd) -> None:
    with PacedPty(baudrate=9600) as pty:
        fd = client_fd(pty.port_path)
        assert pty.read(timeout=0.0) == b""
        os.write(fd, b"\x48\xff\xff\xff\x22")
        got = b""
        deadline = time.monotonic() + 2.0
        while len(got) < 5 and time.monotonic() < deadline:
            got += pty.read(timeout=0.1)
    assert got == b"\x48\xff\xff\xff\x22"


def test_link_path_points_at_the_pty_and_is_removed_on_close(tmp_path) -> None:
    link = tmp_path / "dev" / "meter"
    pty = PacedPty(baudrate=9600, link_path=link)
    try:
        assert link.is_symlink()
        assert os.readlink(link) == pty.port_path
    finally:
        pty.close()
    assert not link.exists() and not link.is_symlink()


def test_link_path_replaces_a_stale_link(tmp_path) -> None:
    link = tmp_path / "meter"
    os.symlink("/nonexistent", link)
    with PacedPty(baudrate=9600, link_path=link) as pty:
        assert os.readlink(link) == pty.port_path


@pytest.mark.parametrize("kwargs", [{"baudrate": 0}, {"baudrate": 9600, "bits_per_byte": 0}])
def test_rejects_invalid_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PacedPty(**kwargs)


def test_write_after_close_fails() -> None:
    pty = PacedPty(baudrate=9600)
    pty.close()
    with pytest.raises(OSError):
        pty.write(b"x")
