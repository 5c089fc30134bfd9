"""One request to each API endpoint before any model loads.

Without it, an endpoint that isn't up turns every cell of its card into an error row after the
client's retries (``APIConnectionError: Connection error.``, the URL not named), while the local
models load and run for nothing.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from sweep.core.config import SweepConfig
from sweep.core.errors import SweepError

TIMEOUT_S = 10.0


def check_endpoints(conf: SweepConfig, timeout_s: float = TIMEOUT_S) -> None:
    """``GET {base_url}/models`` once per endpoint (OpenAI-compatible servers list their models there).
    Any HTTP answer but 401/403 counts as up: some servers don't implement the listing."""
    seen: set[str] = set()
    for key, card in conf.model.cards.items():
        if not card.remote or card.endpoint is None or card.endpoint.base_url in seen:
            continue
        ep, where = card.endpoint, f"model.cards.{key}.endpoint"
        seen.add(ep.base_url)
        url = ep.base_url.rstrip("/") + "/models"
        request = urllib.request.Request(url)
        if ep.api_key_env and os.environ.get(ep.api_key_env):
            request.add_header("Authorization", f"Bearer {os.environ[ep.api_key_env]}")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s):
                pass
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise SweepError(f"{card.name}: {url} refused the key from {ep.api_key_env or 'no variable'} "
                                 f"(HTTP {e.code})",
                                 f"export a valid key in {ep.api_key_env}" if ep.api_key_env else
                                 f"the server wants a key: set {where}.api_key_env to the variable that holds it")
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SweepError(f"{card.name}: the endpoint {ep.base_url} does not answer ({reason}), checked before "
                             "any model loads",
                             f"start the server (README: API and served models) or fix {where}.base_url") from None
