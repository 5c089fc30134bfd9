"""Engines: one interface (``base.Engine``), one registry, heavy imports only on use."""

from jobs.engines.base import Completion, Engine, EngineSettings, Request, create, register

__all__ = ["Completion", "Engine", "EngineSettings", "Request", "create", "register"]
