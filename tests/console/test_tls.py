"""The console over TLS: with CLARET_TLS_CERT/CLARET_TLS_KEY its port serves HTTPS with the gRPC port's
certificate (a self-signed one made by openssl for the test), refuses plain HTTP, marks its cookies Secure,
and reaches the platform over TLS itself."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from tests.console.test_console import console
from tests.test_security import openssl


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key: (certificate, key)."""
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "console.key",
        "-out",
        "console.pem",
        "-days",
        "1",
        "-subj",
        "/CN=claret console test",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        cwd=folder,
    )
    return folder / "console.pem", folder / "console.key"


async def test_the_console_serves_https_with_the_platform_certificate_and_secure_cookies(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    async with console(tmp_path, tls_cert=cert, tls_key=key, auth_tokens=("tls-secret",)) as platform:
        https = platform.url.replace("http://", "https://", 1)
        port = int(https.rsplit(":", 1)[1])
        served = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", port))
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(cert.read_text())

        trusting = ssl.create_default_context(cafile=cert)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):  # plain HTTP on the HTTPS port
                async with session.get(f"{platform.url}/login") as _:
                    pass
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # the system's CAs do not vouch for it
                async with session.get(f"{https}/login") as _:
                    pass

            async with session.get(f"{https}/login", ssl=trusting) as form:
                assert form.status == 200
                csrf = form.cookies["claret_csrf"]
                assert csrf["secure"] and csrf["samesite"] == "Strict"
            login = {"csrf": csrf.value, "token": "tls-secret"}
            cookies = {"Cookie": f"claret_csrf={csrf.value}"}
            async with session.post(
                f"{https}/login", data=login, headers=cookies, ssl=trusting, allow_redirects=False
            ) as logged_in:
                assert logged_in.status == 303
                token = logged_in.cookies["claret_token"]
                assert token.value == "tls-secret"
                assert token["secure"] and token["httponly"] and token["samesite"] == "Strict"

            cookies = {"Cookie": f"claret_csrf={csrf.value}; claret_token={token.value}"}
            for path, heading in (("/jobs", "<h1>Jobs</h1>"), ("/models", "<h1>Models</h1>")):
                async with session.get(f"{https}{path}", headers=cookies, ssl=trusting) as shown:
                    # the page read the platform: the console's own client reached the gRPC port over TLS
                    assert shown.status == 200 and heading in await shown.text(), path
