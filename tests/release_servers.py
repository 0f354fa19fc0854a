"""Real servers for the release tests, on 127.0.0.1 only: Debian's docker-registry (distribution 2.8) and a static
HTTP server (http.server in a thread) whose handler can truncate or stall chosen files."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REGISTRY_BIN = shutil.which("docker-registry") or shutil.which("registry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """``docker-registry serve CONFIG`` with filesystem storage in ``root``; stopped by ``stop()``."""

    def __init__(self, root: Path, auth: str = ""):
        self.port = free_port()
        self.storage = root / "storage"
        self.storage.mkdir(parents=True)
        cfg = root / "config.yml"
        cfg.write_text(f"""{auth}version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{self.port}
""")
        self.log = open(root / "registry.log", "wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        self.host = f"127.0.0.1:{self.port}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(200):
            try:
                with opener.open(f"http://{self.host}/v2/", timeout=1) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, and wants credentials
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()[-500:]}")

    def blob_file(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``directory``; a path ending in one of ``server.truncate`` sends half its bytes under the full
    Content-Length then closes; one ending in ``server.stall`` sends half and waits until ``server.release`` is set;
    one ending in ``server.endless`` streams zeros without a length until the client hangs up."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        path = Path(self.translate_path(self.path))
        if any(self.path.endswith(s) for s in srv.endless):  # no Content-Length, bytes until the client hangs up
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
            self.close_connection = True
            return
        hit = next((s for s in srv.truncate + srv.stall if self.path.endswith(s)), None)
        if hit is None or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if hit in srv.stall:
            srv.stalled.set()
            srv.release.wait(60)
        self.close_connection = True


class StaticServer:
    def __init__(self, root: Path):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.httpd.daemon_threads = True
        self.httpd.truncate, self.httpd.stall, self.httpd.endless = [], [], []
        self.httpd.stalled, self.httpd.release = threading.Event(), threading.Event()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def htpasswd_auth(root: Path, user: str, password: str) -> str:
    """registry config block for Basic auth (bcrypt via the system's crypt(3)); '' if this Python cannot make bcrypt."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt

            hashed = crypt.crypt(
                password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)
            )  # cost 4: the registry checks it per request
        except (ImportError, AttributeError, OSError):
            return ""
    if not hashed or not hashed.startswith("$2"):
        return ""
    (root / "htpasswd").write_text(f"{user}:{hashed}\n")
    return f"auth:\n  htpasswd:\n    realm: c3ae-test\n    path: {root / 'htpasswd'}\n"


class TokenServer:
    """A token realm (distribution's token auth): anonymous callers get pull, ``user:password`` gets pull,push.
    Tokens are ES256 JWTs whose x5c names a self-signed certificate the registry trusts (rootcertbundle)."""

    def __init__(self, root: Path, user: str, password: str):
        import base64
        import datetime
        import json

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "c3ae-test-token")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        (root / "token.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
        self.requests: list[dict] = []
        basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

        def issue(scope: str, authorised: bool) -> str:
            _, repo, actions = scope.split(":")
            allowed = [a for a in actions.split(",") if a == "pull" or authorised]
            t = int(time.time())
            head = {"typ": "JWT", "alg": "ES256", "x5c": [x5c]}
            claims = {
                "iss": "c3ae-test-issuer",
                "sub": user if authorised else "",
                "aud": "c3ae-test",
                "exp": t + 300,
                "nbf": t - 10,
                "iat": t,
                "jti": str(t),
                "access": [{"type": "repository", "name": repo, "actions": allowed}],
            }
            signing = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
            r, s = decode_dss_signature(key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
            return f"{signing}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlsplit

                q = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                auth = self.headers.get("Authorization")
                outer.requests.append({**q, "authorization": bool(auth)})
                if auth is not None and auth != basic:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": issue(q["scope"], auth == basic)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.config = (
            f"auth:\n  token:\n    realm: {self.url}\n    service: c3ae-test\n    issuer: c3ae-test-issuer\n"
            f"    rootcertbundle: {root / 'token.pem'}\n"
        )

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
