"""TLS, mutual TLS and bearer tokens on a real server, with certificates made by openssl for the test."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from claret.cli import main as cli
from protos.nvidia.clara.platform import clara_pb2, clara_pb2_grpc
from shared.config import Settings
from shared.security import TokenInterceptor
from tests.helpers import make_settings, start_in_process

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=claret test CA",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            cwd=d,
        )
    return d


async def serve(settings: Settings) -> AsyncIterator[str]:
    server, resources = await start_in_process(settings)
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(grace=1)
        await resources.close()


async def version(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> int:
    reply = await clara_pb2_grpc.ClaraStub(channel).Version(
        clara_pb2.ClaraVersionRequest(), metadata=metadata, timeout=5
    )
    return int(reply.version.minor)


@pytest.fixture
async def tls_address(tmp_path: Path, pki: Path) -> AsyncIterator[str]:
    async for address in serve(make_settings(tmp_path, tls_cert=pki / "server.pem", tls_key=pki / "server.key")):
        yield address


@pytest.fixture
async def mtls_address(tmp_path: Path, pki: Path) -> AsyncIterator[str]:
    settings = make_settings(
        tmp_path, tls_cert=pki / "server.pem", tls_key=pki / "server.key", tls_client_ca=pki / "ca.pem"
    )
    async for address in serve(settings):
        yield address


@pytest.fixture
async def token_address(tmp_path: Path) -> AsyncIterator[str]:
    tokens = tmp_path / "tokens"
    tokens.write_text("# operators\nfile-token\n\n")
    async for address in serve(make_settings(tmp_path, auth_tokens=("env-token",), auth_tokens_file=tokens)):
        yield address


async def test_tls_server_answers_trusting_clients_only(tls_address: str, pki: Path) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    async with grpc.aio.secure_channel(tls_address, credentials) as channel:
        assert await version(channel) == 7
    async with grpc.aio.insecure_channel(tls_address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await version(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_needs_a_client_certificate(mtls_address: str, pki: Path) -> None:
    ca = (pki / "ca.pem").read_bytes()
    async with grpc.aio.secure_channel(mtls_address, grpc.ssl_channel_credentials(root_certificates=ca)) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await version(channel)
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=(pki / "client.key").read_bytes(),
        certificate_chain=(pki / "client.pem").read_bytes(),
    )
    async with grpc.aio.secure_channel(mtls_address, with_cert) as channel:
        assert await version(channel) == 7


async def test_bearer_tokens(token_address: str) -> None:
    async with grpc.aio.insecure_channel(token_address) as channel:
        for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", "env-token"),)]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await version(channel, metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in (refused.value.details() or "")
        for token in ("env-token", "file-token"):
            assert await version(channel, (("authorization", f"Bearer {token}"),)) == 7
        # Streams are guarded too, and health stays open for probes.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in clara_pb2_grpc.ClaraStub(channel).Utilization(clara_pb2.ClaraUtilizationRequest()):
                pass
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_token_interceptor_needs_tokens() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        TokenInterceptor([])


def test_half_configured_tls_is_refused(tmp_path: Path, pki: Path) -> None:
    from shared.security import server_credentials

    with pytest.raises(ValueError, match="both tls_cert and tls_key"):
        server_credentials(make_settings(tmp_path, tls_cert=pki / "server.pem"))
    with pytest.raises(ValueError, match="mutual TLS is TLS first"):
        server_credentials(make_settings(tmp_path, tls_client_ca=pki / "ca.pem"))


async def test_cli_with_token_and_tls(tmp_path: Path, pki: Path) -> None:
    settings = make_settings(
        tmp_path,
        tls_cert=pki / "server.pem",
        tls_key=pki / "server.key",
        tls_client_ca=pki / "ca.pem",
        auth_tokens=("s3cret",),
    )
    async for address in serve(settings):
        runner = CliRunner()
        secure = [
            "--host",
            address,
            "--ca-cert",
            str(pki / "ca.pem"),
            "--client-cert",
            str(pki / "client.pem"),
            "--client-key",
            str(pki / "client.key"),
        ]
        import asyncio

        refused = await asyncio.to_thread(runner.invoke, cli, ["version", *secure, "--timeout", "5"])
        assert refused.exit_code == 1 and "UNAUTHENTICATED" in refused.output
        accepted = await asyncio.to_thread(runner.invoke, cli, ["version", *secure, "--token", "s3cret"])
        assert accepted.exit_code == 0, accepted.output
        assert "0.7.4" in accepted.output
