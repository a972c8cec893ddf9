"""What a hardened Dask server (scheduler, worker, nanny) answers, and to whom.

Three checks, all on Dask's own hooks:

- **Handlers**: each kind of server answers only the RPC handlers its role in a
  gflite cluster needs (:data:`ALLOWED`); every other one goes to Dask's
  ``blocked_handlers``, which answers with an error. Set by configuration
  (read when the server is made: :func:`blocked_config`, also given by
  environment in the README's recipe) and again on the live server by the
  preload. Stream handlers are not RPC handlers: they ride only on a comm that
  passed ``register-client`` or ``register-worker``.
- **Roles** (mutual TLS): a peer certificate's subject OU names its role,
  :data:`REQUESTOR` or :data:`PROVIDER`. The scheduler admits a client only
  with a requestor certificate and a worker only with a provider one; workers
  and nannies answer only requestor certificates (the scheduler and the
  client that gathers from them); a provider certificate may not act as a
  client. Without TLS there are no roles: plain tcp is for loopback only.
- **HTTP**: dashboards and metrics servers listen on loopback unless
  ``GFLITE_HTTP_HOST`` says otherwise.
"""
from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("distributed.gflite")

REQUESTOR = "gflite-requestor"
PROVIDER = "gflite-provider"
HTTP_HOST_ENV = "GFLITE_HTTP_HOST"

# Every RPC handler distributed 2026.8.0 has, per server kind (the canary test
# fails when an upgrade changes these sets: each new handler needs a decision).
KNOWN = {
    "scheduler": frozenset({
        "adaptive_target", "add_keys", "amm_handler", "benchmark_hardware", "broadcast",
        "call_stack", "check_idle", "connection_stream", "dump_cluster_state_to_url",
        "dump_state", "echo", "event_clear", "event_is_set", "event_set", "event_wait",
        "events", "feed", "gather", "get_cluster_state", "get_error_cause", "get_logs",
        "get_metadata", "get_runspec", "get_story", "get_task_prefix_states",
        "get_task_status", "get_task_stream", "get_task_stream_index", "has_what",
        "heartbeat_worker", "identity", "log_event", "logs", "memory_sampler_start",
        "memory_sampler_stop", "multi_lock_acquire", "multi_lock_release", "nbytes", "ncores",
        "ncores_running", "performance_report", "processing", "profile", "proxy",
        "publish_delete", "publish_get", "publish_list", "publish_put", "queue_create",
        "queue_get", "queue_put", "queue_qsize", "rebalance", "register-client",
        "register-worker", "register_nanny", "register_nanny_plugin",
        "register_scheduler_plugin", "register_worker_plugin", "replicate", "restart",
        "restart_workers", "retire_workers", "retry", "run_function", "scatter",
        "semaphore_acquire", "semaphore_close", "semaphore_refresh_leases",
        "semaphore_register", "semaphore_release", "semaphore_value", "set_metadata",
        "set_resources", "set_restrictions", "shuffle_barrier", "shuffle_get",
        "shuffle_get_or_create", "shuffle_restrict_task", "start_task_metadata",
        "stop_task_metadata", "subscribe_worker_status", "terminate", "unregister",
        "unregister_nanny_plugin", "unregister_scheduler_plugin", "unregister_worker_plugin",
        "update_data", "variable_get", "variable_set", "versions", "who_has", "worker_logs",
        "workers_to_close"}),
    "worker": frozenset({
        "actor_attribute", "actor_execute", "benchmark_disk", "benchmark_memory",
        "benchmark_network", "call_stack", "connection_stream", "dump_state", "echo",
        "free_keys", "gather", "get_data", "get_logs", "get_monitor_info", "get_story",
        "identity", "keys", "ping", "plugin-add", "plugin-remove", "profile",
        "profile_metadata", "run", "run_coroutine", "terminate", "update_data", "upload_file",
        "versions"}),
    "nanny": frozenset({
        "close_gracefully", "connection_stream", "dump_state", "echo", "get_logs", "identity",
        "instantiate", "kill", "plugin_add", "plugin_remove", "restart", "run", "terminate"}),
}

# What a gflite cluster uses. Worker-facing scheduler handlers (a provider's
# certificate may call these and nothing else):
PROVIDER_OPS = frozenset({"register-worker", "heartbeat_worker", "unregister", "register_nanny",
                          "log_event", "identity", "echo"})
ALLOWED = {
    # The requestor's client: connect, list workers, learn results' sizes and where
    # they are. Not "gather": the client fetches answers from the providers
    # itself, so the scheduler never holds one (nor relays one it cannot check).
    "scheduler": PROVIDER_OPS | {"register-client", "nbytes", "who_has", "ncores",
                                 "ncores_running", "versions", "get_metadata",
                                 "subscribe_worker_status"},
    # The scheduler and the requestor's client fetch results; the scheduler frees them.
    "worker": frozenset({"get_data", "free_keys", "ping", "identity", "echo", "keys",
                         "versions"}),
    "nanny": frozenset({"identity", "echo"}),
}


def blocked(kind: str, present: frozenset[str] | set[str] | None = None) -> list[str]:
    """The handlers a server of ``kind`` must refuse (all it has but the allowed)."""
    return sorted((KNOWN[kind] if present is None else frozenset(present)) - ALLOWED[kind])


def blocked_config() -> dict[str, list[str]]:
    """Dask configuration that blocks them, read when a server is made."""
    return {f"distributed.{kind}.blocked-handlers": blocked(kind) for kind in KNOWN}


def blocked_env() -> dict[str, str]:
    """The same as environment variables (a worker reads them before any preload)."""
    return {f"DASK_DISTRIBUTED__{kind.upper()}__BLOCKED_HANDLERS": repr(blocked(kind))
            for kind in KNOWN}


def peer_role(comm: Any) -> str | None:
    """The OU of the TLS peer's certificate subject, ``""`` if it has none, or None
    without TLS."""
    try:
        cert = comm.extra_info.get("peercert")
    except Exception:
        return None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "organizationalUnitName":
                return str(value)
    return ""


def peer_identity(comm: Any) -> str:
    """Who a TLS peer is, from its certificate: ``CN/OU``; its host without TLS."""
    try:
        cert = comm.extra_info.get("peercert")
    except Exception:
        cert = None
    if cert:
        fields = {name: value for rdn in cert.get("subject", ()) for name, value in rdn}
        return f"{fields.get('commonName', '?')}/{fields.get('organizationalUnitName', '?')}"
    address = str(getattr(comm, "peer_address", ""))
    return address.split("://")[-1].rsplit(":", 1)[0]


def _may(kind: str, op: str, role: str | None) -> bool:
    """Whether a peer in ``role`` may call ``op`` on a server of ``kind``."""
    if role is None:  # no TLS: loopback only, no roles
        return True
    if kind != "scheduler":  # workers and nannies answer the requestor's scheduler and client
        return role == REQUESTOR
    if op in ("identity", "echo"):
        return role in (REQUESTOR, PROVIDER)
    if op in PROVIDER_OPS:
        return role == PROVIDER
    return role == REQUESTOR


def _expects_comm(func: Callable) -> bool:
    params = inspect.signature(func).parameters
    return bool(params) and next(iter(params)) == "comm"


def _guarded(kind: str, op: str, handler: Callable) -> Callable:
    takes_comm = _expects_comm(handler)
    takes_serializers = "serializers" in inspect.signature(handler).parameters

    async def call(comm: Any, msg: dict) -> Any:
        role = peer_role(comm)
        if not _may(kind, op, role):
            logger.warning("refused %r from %s (role %r)", op, peer_identity(comm), role)
            raise PermissionError(f"gflite: the {op!r} handler is not for role {role!r}")
        result = handler(comm, **msg) if takes_comm else handler(**msg)
        if inspect.isawaitable(result):
            result = await result
        return result

    if takes_serializers:
        async def guarded(comm: Any, serializers: Any = None, **msg: Any) -> Any:
            return await call(comm, {**msg, "serializers": serializers})
    else:
        async def guarded(comm: Any, **msg: Any) -> Any:  # type: ignore[misc]
            return await call(comm, msg)
    guarded.__name__ = getattr(handler, "__name__", op)
    return guarded


def harden(server: Any, kind: str) -> None:
    """Block and guard the live ``server``'s handlers (idempotent)."""
    if getattr(server, "_gflite_hardened", False):
        return
    block = blocked(kind, set(server.handlers))
    server.blocked_handlers = sorted(set(server.blocked_handlers) | set(block))
    for op, handler in list(server.handlers.items()):
        if op not in block:
            server.handlers[op] = _guarded(kind, op, handler)
    server._gflite_hardened = True


def register_identity(server: Any) -> None:
    """Scheduler: remember each worker's certificate identity (its operator) in the
    worker's metadata, as this side saw it when the worker registered."""
    original = server.handlers["register-worker"]

    async def register(comm: Any, **msg: Any) -> Any:
        ident = peer_identity(comm)
        extra = msg.get("extra")
        if isinstance(extra, dict) and isinstance(extra.get("gflite"), dict):
            extra["gflite"]["operator"] = ident  # overrides anything the worker claimed
        result = original(comm, **msg)
        return await result if inspect.isawaitable(result) else result

    register.__name__ = "add_worker"
    server.handlers["register-worker"] = register


def loopback_http() -> None:
    """Make every Dask HTTP server in this process listen on loopback (or on
    ``GFLITE_HTTP_HOST``) when its address names no host."""
    from distributed.node import ServerNode

    if getattr(ServerNode.start_http_server, "_gflite", False):
        return
    original = ServerNode.start_http_server
    host = os.environ.get(HTTP_HOST_ENV, "").strip() or "127.0.0.1"

    def start_http_server(self: Any, routes: Any, dashboard_address: Any, default_port: int = 0,
                          ssl_options: Any = None) -> Any:
        addr = dashboard_address if dashboard_address is not None else default_port
        if isinstance(addr, int):
            addr = f"{host}:{addr}"
        elif isinstance(addr, str) and (addr.startswith(":") or addr.startswith("0.0.0.0:")):
            addr = f"{host}:{addr.rsplit(':', 1)[1]}"
        return original(self, routes, addr, default_port, ssl_options)

    start_http_server._gflite = True  # type: ignore[attr-defined]
    ServerNode.start_http_server = start_http_server  # type: ignore[method-assign]
