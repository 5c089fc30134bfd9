"""Credentials passed as overrides stay out of what Hydra itself writes and logs.

``hydra.output_subdir: null`` stops the per-run ``.hydra/`` copies, but a multirun still saves
the whole command line and config to ``<sweep dir>/multirun.yaml`` (BasicSweeper, no option to
turn it off) and logs each job's overrides (``#0 : ...``). The callback below rewrites that file
with every credential replaced by ***, as soon as a job starts (the file exists by then), and the
log filter redacts the launch lines before they are printed. Credentials are the values of keys
``provenance.SECRET_KEY`` matches, the same rule the warehouse's stored config uses.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweep.provenance import SECRET_KEY, redacted

# key=value in an override list or a log line; redacted when the key's last part names a credential.
OVERRIDE = re.compile(r"(?P<key>[+~]*[\w.\-]+)=(?P<value>\S+)")


def redact_overrides(text: str) -> str:
    """``x.secret=abc`` -> ``x.secret=***`` wherever such an override appears in ``text``."""
    return OVERRIDE.sub(lambda m: f"{m['key']}=***" if SECRET_KEY.search(m["key"].split(".")[-1]) else m[0], text)


def secret_values(cfg: Any) -> set[str]:
    """Values of the credential keys of a config (its ``hydra`` node left out)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if SECRET_KEY.search(str(k)) and isinstance(v, str) and v:
                    found.add(v)
                elif k != "hydra":
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg)
    return found


def scrub_file(path: Path, secrets: set[str]) -> None:
    """Rewrite the YAML file ``path`` with credential values, ``secrets`` wherever they appear, and
    credential overrides replaced by *** (interpolations are kept as written)."""
    if not path.is_file():
        return

    def clean(text: str) -> str:
        for value in sorted(secrets, key=len, reverse=True):
            text = text.replace(value, "***")
        return redact_overrides(text)

    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    cleaned = redacted(data, clean)
    if cleaned != data:
        OmegaConf.save(OmegaConf.create(cleaned), path)


class RedactMultirun(Callback):
    """Hydra callback (conf/config.yaml, ``hydra.callbacks``): multirun.yaml without credentials."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode is not None and config.hydra.mode.name == "MULTIRUN":
            scrub_file(Path(config.hydra.sweep.dir) / "multirun.yaml", secret_values(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        scrub_file(Path(config.hydra.sweep.dir) / "multirun.yaml", secret_values(config))


class RedactFilter(logging.Filter):
    """Logging filter for Hydra's own log lines (``hydra.hydra_logging``): credential overrides as ***."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_overrides(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
