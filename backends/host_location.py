"""Where the worker's host runs, as its deployment says: `--location KIND[:SITE]`.

The spec declares where a target *should* run (`location onprem "fra-dc1"`);
only the deployment knows where a worker *does*: the host's operator passes
`infc worker --location onprem:fra-dc1`, or sets `INFERPLANE_LOCATION` (in
Kubernetes, from a node label; the flag wins). The worker reports it in its
Health with `location_source: host`, and the gateway checks the on-prem rule
against it (gateway/placement.py). Given neither, the worker falls back to the
declaration (`location_source: declared`), which the gateway cannot verify.

    resolve("onprem:fra-dc1", os.environ)   # HostLocation("onprem", "fra-dc1")
    resolve(None, {})                        # None: fall back to the declaration

KIND is onprem, cloud or edge; SITE is everything after the first colon (a
site may hold colons itself: `cloud:gcp:us-central1`). A malformed value is a
ValueError whose message names where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from inferplane.compiler.schema import LOCATIONS

ENV = "INFERPLANE_LOCATION"
SYNTAX = "KIND[:SITE], KIND one of " + ", ".join(LOCATIONS)


@dataclass(frozen=True)
class HostLocation:
    kind: str
    site: str = ""  # "" when the deployment gave only the kind

    def __str__(self) -> str:
        return f"{self.kind}:{self.site}" if self.site else self.kind


def parse(text: str) -> HostLocation:
    """`KIND[:SITE]`; raises ValueError saying what is expected."""
    kind, colon, site = text.strip().partition(":")
    if kind not in LOCATIONS:
        raise ValueError(f"{text!r} is not a location: give {SYNTAX} (e.g. onprem:fra-dc1)")
    if colon and not site.strip():
        raise ValueError(f"{text!r} has an empty site: give {SYNTAX}, or the kind alone")
    return HostLocation(kind, site.strip())


def resolve(flag: str | None, environ: Mapping[str, str]) -> HostLocation | None:
    """The host's location from `--location`, else from INFERPLANE_LOCATION, else None.

    An empty INFERPLANE_LOCATION counts as unset (a template that left it blank).
    """
    if flag is not None:
        try:
            return parse(flag)
        except ValueError as error:
            raise ValueError(f"--location: {error}") from None
    value = environ.get(ENV, "")
    if not value.strip():
        return None
    try:
        return parse(value)
    except ValueError as error:
        raise ValueError(f"{ENV}: {error}") from None
