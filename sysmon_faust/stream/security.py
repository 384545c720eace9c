"""Why a secured Kafka turns this app away, in one line that says what to check.

aiokafka reports a refused login as ``KafkaConnectionError: Unable to
bootstrap from [...]`` and logs the real reason (``SaslAuthenticationFailed``)
on the side. When a client cannot start, :func:`explain_refusal` opens one
connection per bootstrap server with the same settings and turns the broker's
answer into a message naming the settings at fault, so a worker with a wrong
password stops at once and says so (:func:`sysmon_faust.stream.topology.ensure_topics`).
"""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from sysmon_faust.settings import Settings
from sysmon_faust.stream.startup import StartRefused

#: Seconds one diagnostic connection may take.
PROBE_TIMEOUT = 10.0


class KafkaAccessRefused(StartRefused):
    """The brokers refuse this app's connections; the message says which setting to check."""


async def explain_refusal(settings: Settings) -> str | None:
    """A one-line reason when the brokers refuse this app's connections, else None.

    None also when no broker answers at all: that is not a matter of
    credentials, and the caller's own error says it better.
    """
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            connection = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    request_timeout_ms=int(PROBE_TIMEOUT * 1000),
                    **settings.kafka_client_options(),
                ),
                PROBE_TIMEOUT,
            )
        except (SaslAuthenticationFailed, AuthenticationFailedError) as error:
            return (
                f"Kafka at {server} refused the credentials of "
                f"KAFKA_SASL_USERNAME={settings.kafka_sasl_username} "
                f"({settings.kafka_sasl_mechanism}): check KAFKA_SASL_PASSWORD, and that the "
                f"user exists for {settings.kafka_sasl_mechanism} on the cluster "
                f"(broker said: {_broker_said(error)})"
            )
        except UnsupportedSaslMechanismError as error:
            return (
                f"Kafka at {server} does not offer KAFKA_SASL_MECHANISM="
                f"{settings.kafka_sasl_mechanism} on this listener ({_broker_said(error)})"
            )
        except IllegalSaslStateError:
            return (
                f"Kafka at {server} does not expect SASL on this port: "
                f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} does not match "
                "the listener (check the port in KAFKA_BOOTSTRAP_SERVERS)"
            )
        except ssl.SSLCertVerificationError as error:
            return (
                f"TLS with Kafka at {server} failed, the broker's certificate is not "
                f"trusted ({error.verify_message}): check KAFKA_SSL_CAFILE"
            )
        except Exception:
            continue  # unreachable, or a failure that is not about access
        connection.close()
    return None


def _broker_said(error: Exception) -> str:
    text = str(error).strip()
    # aiokafka's messages begin with "[Error 58] SaslAuthenticationFailed: ".
    return text.split(": ", 1)[1] if text.startswith("[Error") and ": " in text else text
