"""``python -m sweep [overrides]``: compose the config, then hand it to ``sweep.run.run``."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sweep.config import register
from sweep.errors import SweepError

register()


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from rich.console import Console

    from sweep.run import run
    from warehouse.db import connect
    from warehouse.report import print_report

    try:
        result = run(cfg)
    except SweepError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    print_report(connect(result.store), result.store, result.run_id, Console())  # tables to stdout


if __name__ == "__main__":
    main()
