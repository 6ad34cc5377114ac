"""What ran: the package's version and the Rust core's build (``stream-features --version``,
``/healthz`` of the API and of the consumer, the status page's footer), for bug reports."""

from __future__ import annotations

from typing import Any

from . import __version__


def build_info() -> dict[str, Any]:
    """``{"version": package version, "core": {"version", "commit", "profile", "rustc"}}``."""
    from ._native import BUILD

    return {"version": __version__, "core": dict(BUILD)}


def version_line() -> str:
    """One line, e.g. ``stream-features 0.1.0 (core 0.1.0, commit 1a2b3c4d5e6f, release build, rustc 1.95.0)``."""
    info = build_info()
    core = info["core"]
    rustc = " ".join(str(core["rustc"]).split()[:2])  # "rustc 1.95.0", without the hash and date
    return (
        f"stream-features {info['version']} "
        f"(core {core['version']}, commit {core['commit']}, {core['profile']} build, {rustc})"
    )
