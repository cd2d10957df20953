"""`traywire.tlsdefer`: aiohttp imported without loading its client's CA
certificates at start - and its client still verifies servers as before, with
the system's CA bundle loaded at its first TLS connection.

Each case runs in a fresh interpreter (this one imported aiohttp long ago),
with ``SSL_CERT_FILE`` naming a bundle of the test's own: a certificate the
client must trust (it is in the bundle) and another it must refuse.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"traywire test {name}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    c, k = tmp / f"{name}.pem", tmp / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return c, k


CHILD = textwrap.dedent(
    """
    import asyncio, ssl, sys
    from traywire.tlsdefer import import_aiohttp

    import_aiohttp()
    import aiohttp
    from aiohttp import connector, web

    # nothing of the patch is left on ssl's class
    assert "set_default_verify_paths" not in ssl.SSLContext.__dict__
    assert ssl.SSLContext.load_default_certs.__module__ == "ssl"
    verified = connector._SSL_CONTEXT_VERIFIED
    stats = ssl.SSLContext.cert_store_stats  # the class's: does not load
    assert stats(verified)["x509_ca"] == 0, "the CA bundle was loaded at import"
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname

    async def serve(cert, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_get("/", lambda r: web.Response(text="hello"))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        return runner, f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"

    async def main():
        trusted, t_url = await serve(sys.argv[1], sys.argv[2])
        other, o_url = await serve(sys.argv[3], sys.argv[4])
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(t_url) as r:
                    assert r.status == 200 and await r.text() == "hello"
                assert stats(verified)["x509_ca"] == 1, stats(verified)
                try:
                    async with s.get(o_url) as r:
                        raise AssertionError(f"an untrusted certificate was accepted: {r.status}")
                except aiohttp.ClientConnectorCertificateError as exc:
                    assert "certificate verify failed" in str(exc), exc
                async with s.get(o_url, ssl=False) as r:  # the unverified context
                    assert r.status == 200
        finally:
            await trusted.cleanup()
            await other.cleanup()
        print("ok")

    asyncio.run(main())
    """
)


def test_aiohttp_client_verifies_with_the_ca_bundle_loaded_at_first_use(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    trusted = _certificate(tmp_path, "trusted")
    other = _certificate(tmp_path, "other")
    env = dict(os.environ, SSL_CERT_FILE=str(trusted[0]), SSL_CERT_DIR=str(tmp_path / "none"))
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    p = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, (*trusted, *other))],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip() == "ok"


def test_nothing_changes_when_aiohttp_is_already_imported(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    bundle, _ = _certificate(tmp_path, "ca")
    code = (
        "import ssl, aiohttp.connector as c\n"
        "from traywire.tlsdefer import import_aiohttp\n"
        "import_aiohttp()\n"
        "v = c._SSL_CONTEXT_VERIFIED\n"
        "assert 'wrap_bio' not in v.__dict__\n"
        "assert ssl.SSLContext.cert_store_stats(v)['x509_ca'] == 1\n"
        "print('ok')\n"
    )
    env = dict(os.environ, SSL_CERT_FILE=str(bundle), SSL_CERT_DIR=str(tmp_path / "none"))
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip() == "ok"
