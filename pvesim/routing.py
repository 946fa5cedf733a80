"""The route table: which handler answers `METHOD /path/{param}`, with which parameter schema."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pvesim.params import NODE, VMID, Param

if TYPE_CHECKING:
    from pvesim.cluster import Cluster


@dataclass(frozen=True)
class Ctx:
    """Who is asking, and the simulated instant the request is answered at."""

    authid: str
    now: float
    privileged: bool

    @property
    def is_token(self) -> bool:
        return "!" in self.authid


@dataclass(frozen=True)
class Paged:
    """A list answer that also carries PVE's `total` next to `data`."""

    data: list[Any]
    total: int


Handler = Callable[["Cluster", Ctx, dict[str, Any]], Any]

# Path parameters PVE validates like any other parameter.
PATH_PARAMS: dict[str, Param] = {
    "node": NODE,
    "vmid": VMID,
    "upid": Param("string", optional=False),
    "sid": Param("string", optional=False),
    "rule": Param("string", optional=False),
    "storage": Param("string", optional=False),
    "poolid": Param("string", optional=False),
}


@dataclass(frozen=True)
class Route:
    """One endpoint. `proxy`: PVE forwards it to the node in the path (proxyto => 'node')."""

    method: str
    parts: tuple[str, ...]
    handler: Handler
    schema: Mapping[str, Param] = field(default_factory=dict)
    proxy: bool = False
    sys_audit: bool = False
    public: bool = False

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.parts):
            return None
        params: dict[str, str] = {}
        for pattern, value in zip(self.parts, parts, strict=True):
            if pattern.startswith("{"):
                if not value:
                    return None
                params[pattern[1:-1]] = value
            elif pattern != value:
                return None
        return params

    def full_schema(self) -> dict[str, Param]:
        schema = {p[1:-1]: PATH_PARAMS[p[1:-1]] for p in self.parts if p.startswith("{")}
        schema.update(self.schema)
        return schema


ROUTES: list[Route] = []


def split_path(path: str) -> list[str]:
    return [p for p in path.strip("/").split("/")] if path.strip("/") else []


def route(
    method: str,
    path: str,
    schema: Mapping[str, Param] | None = None,
    *,
    proxy: bool = False,
    sys_audit: bool = False,
    public: bool = False,
) -> Callable[[Handler], Handler]:
    """Register a handler for `METHOD path` (path like /nodes/{node}/status)."""

    def register(handler: Handler) -> Handler:
        ROUTES.append(
            Route(
                method=method,
                parts=tuple(split_path(path)),
                handler=handler,
                schema=dict(schema or {}),
                proxy=proxy,
                sys_audit=sys_audit,
                public=public,
            )
        )
        return handler

    return register


def find(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    parts = split_path(path)
    for candidate in ROUTES:
        if candidate.method != method:
            continue
        params = candidate.match(parts)
        if params is not None:
            return candidate, params
    return None
