"""Wheels the platform can install offline.

``vctl install`` runs ``poetry add`` on the wheel inside ``$VOLTTRON_HOME``; Poetry then tries to
resolve every ``Requires-Dist`` of the wheel against an index, which fails or hangs here. Our own
agents declare no dependencies. Third-party agents (the platform driver, the historian) do, and
their dependencies are already installed in the platform venv from requirements.txt, so we hand
the platform a copy of their wheel with the ``Requires-Dist`` lines removed.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

__all__ = ["strip_requirements"]


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def strip_requirements(wheel: Path, out_dir: Path) -> Path:
    """Write a copy of ``wheel`` into ``out_dir`` without ``Requires-Dist`` metadata; return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / wheel.name
    with zipfile.ZipFile(wheel) as src:
        names = src.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        meta = src.read(meta_name).decode()
        lines = meta.split("\n")
        kept = [ln for ln in lines if not ln.startswith("Requires-Dist:")]
        new_meta = "\n".join(kept).encode()
        record_lines = []
        for row in src.read(record_name).decode().splitlines():
            if row.startswith(meta_name + ","):
                row = f"{meta_name},{_record_hash(new_meta)},{len(new_meta)}"
            record_lines.append(row)
        new_record = ("\n".join(record_lines) + "\n").encode()
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if info.filename == meta_name:
                    dst.writestr(info, new_meta)
                elif info.filename == record_name:
                    dst.writestr(info, new_record)
                else:
                    dst.writestr(info, src.read(info.filename))
    return target


if __name__ == "__main__":
    import sys

    print(strip_requirements(Path(sys.argv[1]), Path(sys.argv[2])))
