"""sysmon_faust.stream.security: the one-line reasons, against local sockets (no broker needed)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from sysmon_faust.settings import Settings
from sysmon_faust.stream.security import explain_refusal
from tests.support import self_signed_pem


@pytest.fixture(scope="module")
def server_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_pem(tmp_path_factory.mktemp("tls"), "untrusted-broker")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_untrusted_broker_certificate_names_the_ca_file(
    server_pem: tuple[Path, Path],
) -> None:
    cert, key = server_pem
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    async def run() -> str | None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            # The system's CAs (no KAFKA_SSL_CAFILE) do not vouch for a self-signed certificate.
            settings = Settings.from_env(
                {
                    "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
                    "KAFKA_SECURITY_PROTOCOL": "SSL",
                }
            )
            return await explain_refusal(settings)
        finally:
            server.close()
            await server.wait_closed()

    reason = asyncio.run(run())
    assert reason is not None
    assert reason.startswith("TLS with Kafka at 127.0.0.1:")
    assert reason.endswith("check KAFKA_SSL_CAFILE")
    assert "\n" not in reason


def test_no_broker_at_all_is_not_a_matter_of_credentials() -> None:
    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}",
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "KAFKA_SASL_USERNAME": "alice",
            "KAFKA_SASL_PASSWORD": "x",
        }
    )
    assert asyncio.run(explain_refusal(settings)) is None
