"""Checks on the composed config that Hydra's typing lets through, run before anything starts.

Hydra's ``+key=value`` adds a key even under a schema node (its own error message suggests the
``+``), so a misspelt key would be silently ignored; and a missing mandatory value would surface
as an OmegaConf traceback. Both become one ``SweepError``.
"""

from __future__ import annotations

import dataclasses
import difflib

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from sweep.core.config import SweepConfig
from sweep.core.errors import SweepError


def typed(cfg: DictConfig) -> SweepConfig:
    """The composed config as the typed object, after refusing keys the schema doesn't have."""
    check_keys(cfg)
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        raise SweepError(f"required key {e.full_key} is not set", f"set it: {e.full_key}=...") from None


def check_keys(node: DictConfig | ListConfig, where: str = "") -> None:
    """Every key under a schema node (a dataclass) must be one of its fields; dict nodes
    (``model.cards``, ``storage_options``) take any key, their values are checked in turn."""
    if isinstance(node, ListConfig):
        for i, item in enumerate(node._iter_ex(resolve=False)):
            if isinstance(item, (DictConfig, ListConfig)):
                check_keys(item, f"{where}[{i}]")
        return
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        fields = [f.name for f in dataclasses.fields(schema)]
        for key in node.keys():
            if key not in fields:
                full = f"{where}.{key}" if where else str(key)
                close = difflib.get_close_matches(str(key), fields, n=3)
                hint = f"did you mean {' or '.join(close)}? " if close else ""
                raise SweepError(f"unknown key {full}: {schema.__name__} has no {key!r} (a + override adds it, but "
                                 "nothing would read it)",
                                 f"{hint}valid keys under {where or 'the top level'}: {', '.join(fields)}")
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)) and not child._is_missing() and not child._is_none():
            check_keys(child, f"{where}.{key}" if where else str(key))
