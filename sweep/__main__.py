"""``python -m sweep [overrides]``: compose the config, then hand it to ``sweep.run.run``."""

from __future__ import annotations

import sys
import traceback

import hydra
from omegaconf import DictConfig

from sweep.checks import typed
from sweep.core.config import register
from sweep.core.errors import SweepError

register()


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from warehouse.formats import console

    try:
        if cfg.plan:  # print the plan and stop: Ray is not even imported
            from sweep.forecast import show_plan

            console().print(show_plan(typed(cfg)))
            return
        from sweep.run import run

        result = run(cfg)
    except SweepError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    except Exception:
        # A bug keeps its traceback, but not Hydra's echo of the command line, which may
        # hold credentials passed as overrides.
        traceback.print_exc()
        sys.exit(1)
    from warehouse.db import connect
    from warehouse.html import save_run_page
    from warehouse.report import print_report

    con = connect(result.store)
    panel = print_report(con, result.store, result.run_id, console())  # tables to stdout
    print(f"Page: {save_run_page(con, result.store, result.run_id, panel)}")


if __name__ == "__main__":
    main()
