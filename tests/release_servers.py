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
import urllib.request
from pathlib import Path

REGISTRY_BIN = shutil.which("docker-registry") or shutil.which("registry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """``docker-registry serve CONFIG`` with filesystem storage in ``root``; stopped by ``stop()``."""

    def __init__(self, root: Path):
        self.port = free_port()
        self.storage = root / "storage"
        self.storage.mkdir(parents=True)
        cfg = root / "config.yml"
        cfg.write_text(f"""version: 0.1
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
    Content-Length then closes; one ending in ``server.stall`` sends half and waits until ``server.release`` is set."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        path = Path(self.translate_path(self.path))
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
        self.httpd.truncate, self.httpd.stall = [], []
        self.httpd.stalled, self.httpd.release = threading.Event(), threading.Event()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
