"""A container health check: exit 0 when this container's service answers its probe, else 1.

    python -m matchnet.healthcheck [readyz|healthz]

The service is ``$MATCHNET_SERVICE`` (as ``matchnet serve`` runs it); its port comes from the same
settings the service reads, so the check and the server never disagree. Standard library only: it
runs every few seconds.
"""

from __future__ import annotations

import os
import sys
import urllib.request

from shared.settings import DEFAULT_PORTS

SERVICE_ENV = "MATCHNET_SERVICE"


def probe_url(service: str, probe: str = "readyz") -> str:
    port = os.environ.get(f"MATCHNET_{service.upper()}_PORT") or str(DEFAULT_PORTS[service])
    return f"http://127.0.0.1:{port}/{probe}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    probe = args[0] if args else "readyz"
    service = os.environ.get(SERVICE_ENV, "")
    if service not in DEFAULT_PORTS or probe not in ("readyz", "healthz"):
        print(f"usage: {SERVICE_ENV}=<service> python -m matchnet.healthcheck [readyz|healthz]", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(probe_url(service, probe), timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as error:
        print(f"{service} /{probe}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
