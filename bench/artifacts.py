"""Deployment artifacts: the zipped size of each function and of the layer as `sam build` leaves them in
.aws-sam/build (it runs `make build` first, so the figures are the tree's), and proof that they are for
Lambda's python3.13/arm64: every compiled extension is cp313 aarch64, every module has a cpython-313 .pyc.

Sizes matter twice: Lambda caps an unzipped function + layers at 250 MB, and a bigger package is a slower
cold start (it is downloaded and unpacked first).
"""

from __future__ import annotations

import io
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

NAME = "Deployment artifacts (sam build, python3.13/arm64)"

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / ".aws-sam" / "build"
LAYER = "BillPayLayer"
EXTENSION_TAG = "cpython-313-aarch64-linux-gnu"


def _build() -> float:
    """Run `make build` (a few seconds: pip's cache serves the wheels); returns the seconds it took."""
    started = time.perf_counter()
    subprocess.run(["make", "build"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _zip_size(directory: Path) -> tuple[int, int, int]:
    """(zipped bytes, unzipped bytes, files) of a directory zipped the way sam deploy does (deflate)."""
    buffer = io.BytesIO()
    unzipped = files = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
                unzipped += path.stat().st_size
                files += 1
    return len(buffer.getvalue()), unzipped, files


def _python_health(directory: Path) -> dict[str, Any]:
    """Extension modules and .pyc coverage of one artifact."""
    extensions = sorted(p.name for p in directory.rglob("*.so"))
    foreign = [name for name in extensions if EXTENSION_TAG not in name and "abi3" not in name]
    sources = [p for p in directory.rglob("*.py") if "__pycache__" not in p.parts]
    missing_pyc = [
        p for p in sources if not (p.parent / "__pycache__" / f"{p.stem}.cpython-313.pyc").is_file()
    ]
    other_pyc = [p for p in directory.rglob("*.pyc") if ".cpython-313." not in p.name]
    return {
        "extensions": extensions,
        "extensions_cp313_aarch64": not foreign,
        "foreign_extensions": foreign,
        "py_files": len(sources),
        "py_without_cpython313_pyc": len(missing_pyc),
        "pyc_for_other_pythons": len(other_pyc),
    }


def _kib(size: int) -> float:
    return round(size / 1024, 1)


def run() -> dict[str, Any]:
    build_seconds = _build()
    artifacts = sorted(p for p in BUILD_DIR.iterdir() if p.is_dir())
    if not any(p.name == LAYER for p in artifacts):
        raise RuntimeError(f"{BUILD_DIR} has no {LAYER}: run `make build`")
    results: dict[str, Any] = {"make_build_seconds": round(build_seconds, 1)}
    total_zipped = 0
    for artifact in artifacts:
        zipped, unzipped, files = _zip_size(artifact)
        total_zipped += zipped
        health = _python_health(artifact)
        entry: dict[str, Any] = {
            "zipped_kib": _kib(zipped),
            "unzipped_kib": _kib(unzipped),
            "files": files,
            "py_without_cpython313_pyc": health["py_without_cpython313_pyc"],
        }
        if artifact.name == LAYER:
            wheels = sorted(p.name for p in (artifact / "python").glob("*.dist-info"))
            entry |= {
                "extensions": ", ".join(health["extensions"]),
                "extensions_cp313_aarch64": health["extensions_cp313_aarch64"],
                "pyc_for_other_pythons": health["pyc_for_other_pythons"],
                "distributions": len(wheels),
            }
            if not health["extensions_cp313_aarch64"]:
                raise RuntimeError(
                    f"layer has extensions not built for cp313/aarch64: {health['foreign_extensions']}"
                )
        results[artifact.name] = entry
    results["total_zipped_kib"] = _kib(total_zipped)
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
