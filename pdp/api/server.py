"""The PDP's gRPC server: listening (TCP or unix socket), TLS and mTLS, health, draining.

Owns the grpc.aio server object and its lifecycle only; what it serves comes from
pdp.api.service. Health follows the standard grpc.health.v1 service: SERVING once the
engine and store are up, NOT_SERVING while draining.
"""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pdp.api.decide_stream import answers_serializer
from pdp.api.service import DecisionService
from portcullis.config import TLSSettings
from portcullis.v1 import pdp_pb2_grpc

log = logging.getLogger("portcullis.server")

SERVICE_NAME = "portcullis.v1.DecisionService"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def server_credentials(tls: TLSSettings) -> grpc.ServerCredentials:
    assert tls.cert_file is not None and tls.key_file is not None
    root = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=root,
        require_client_auth=root is not None,
    )


def _register(service: DecisionService, server: grpc.aio.Server) -> None:
    """DecisionService on `server` as the generated code registers it, with DecideStream's
    answers serialized by decide_stream.answers_serializer (a batch of answers is written
    already serialized: pdp.api.decide_stream.batch_bytes)."""
    seen = _Registration()
    pdp_pb2_grpc.add_DecisionServiceServicer_to_server(service, seen)
    handlers = seen.handlers
    if "DecideStream" not in handlers:
        raise RuntimeError("the generated DecisionService registration changed its shape")
    handlers = {
        **handlers,
        "DecideStream": handlers["DecideStream"]._replace(response_serializer=answers_serializer),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class _Registration:
    """What the generated registration gives a server: its method handlers, kept."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, _handlers: object) -> None:
        pass  # made again from the method handlers, which come next

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        if service != SERVICE_NAME:
            raise RuntimeError(f"unexpected service {service!r} registered")
        self.handlers = dict(handlers)


class PDPServer:
    def __init__(
        self,
        service: DecisionService,
        listen: str,
        tls: TLSSettings | None = None,
        reuse_port: bool = False,
    ):
        """reuse_port: share the port with other PDP replicas on this host (SO_REUSEPORT)."""
        self.listen = listen
        self.service = service
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ]
        )
        _register(service, self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = listen
        try:
            if tls is not None:
                self.port = self.server.add_secure_port(address, server_credentials(tls))
            else:
                self.port = self.server.add_insecure_port(address)
        except RuntimeError:  # grpc's "Failed to bind to address ..."
            self.port = 0
        if self.port == 0 and not listen.startswith("unix:"):
            raise OSError(f"pdp.listen {listen}: cannot listen (address in use?)")

    @property
    def address(self) -> str:
        """Where clients connect; a configured port 0 is replaced by the bound port."""
        if self.listen.startswith("unix:"):
            return self.listen
        host = self.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("PDP listening on %s", self.address)

    async def stop(self, grace: float = 10.0) -> None:
        """Refuse new calls, let in-flight calls finish within `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        self.service.streams.close()  # they answer what is in flight, then end
        await self.server.stop(grace)

    async def wait(self) -> None:
        await self.server.wait_for_termination()
