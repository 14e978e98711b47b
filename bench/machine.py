"""What every bench records about the machine it ran on (its JSON's "machine"), and the engine's
default decoding, so that a table says where and with what its numbers were measured."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    return name or platform.processor() or "unknown CPU"


def machine() -> dict:
    """The CPU, its cores, the load when the run began (other jobs on a shared machine), Python,
    and the forced CPU code paths, if any (CTranslate2's, scripts/test_isa.py's variables)."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(),
            "load_average": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(),
            "ct2_isa": os.environ.get("CT2_FORCE_CPU_ISA", "auto"), "ct2_mkl": os.environ.get("CT2_USE_MKL", "auto")}


def default_decoding() -> dict:
    """The engine's default decoding settings (whisper_gl.config.DecodingOptions), as JSON."""
    from whisper_gl.config import DecodingOptions

    defaults = DecodingOptions()
    return {name: getattr(defaults, name) for name in ("long_form", "beam_size", "temperatures", "timestamps",
                                                       "batch_size")}
