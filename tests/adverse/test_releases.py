"""Releases under attack and user files under pull (issue 24, classes 3, 4, 5, 10): a replayed old index or release
list, a frozen (expired) store, pre-releases, a deleted tag, a pull onto the user's own folder, keygen through a
link, a hostile registry and an endless download. Real signed bundles (the suite's ONNX bundle, signed here), real
minisign and pull.sh, the static HTTP server and Debian's docker-registry on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from release_servers import REGISTRY_BIN, Registry, StaticServer

from .conftest import copy_bundle, one_line_error

MINISIGN = shutil.which("minisign")
needs_minisign = pytest.mark.skipif(MINISIGN is None, reason="minisign not installed (.ci/run installs it)")
needs_registry = pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def signed(tmp_path_factory, tiny_bundle) -> dict:
    """A key pair and the suite's bundle signed as 0.1.0, 0.2.0 and 0.3.0rc1 (manifest version relabelled)."""
    from c3ae_edge.export.bundle import _sums
    from c3ae_edge.release.sign import SecretKey, sign_bundle, write_keypair

    d = tmp_path_factory.mktemp("signed")
    sec, pub, _ = write_keypair(d / "release", unencrypted=True)
    out = {"key": sec, "pub": pub}
    for v in ("0.1.0", "0.2.0", "0.3.0rc1"):
        b = copy_bundle(tiny_bundle, d / f"c3ae_full-{v}-tiny")
        m = json.loads((b / "manifest.json").read_text())
        m["model"]["version"] = v
        (b / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
        _sums(b)
        sign_bundle(b, SecretKey.load(sec))
        out[v] = b
    return out


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    s = tmp_path / "state"
    monkeypatch.setenv("C3AE_STATE_DIR", str(s))
    return s


def _ok(r):
    assert r.code == 0, r.err
    return r.out


def _pull(cli, signed, src, out, spec="c3ae_full", *extra):
    return cli(
        "pull", spec, "--target", "tiny", "--from", str(src), "--key", str(signed["pub"]), "--out", str(out), *extra
    )


def _pull_sh(signed, base, out, spec="c3ae_full", **env):
    script = Path(__file__).resolve().parents[2] / "c3ae_edge" / "release" / "pull.sh"
    e = {"PATH": os.environ["PATH"], "C3AE_STATE_DIR": os.environ["C3AE_STATE_DIR"], **env}
    return subprocess.run(
        ["sh", str(script), str(base), spec, "tiny", str(signed["pub"]), str(out)],
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _save_index(store: Path) -> dict[str, bytes]:
    return {n: (store / n).read_bytes() for n in ("index.json", "index.json.minisig", "index.txt", "index.txt.minisig")}


@needs_minisign
def test_static_replayed_index_is_refused(signed, tmp_path, state, cli):
    store = tmp_path / "store"
    _ok(cli("publish", str(signed["0.1.0"]), "--to", str(store), "--key", str(signed["key"])))
    old = _save_index(store)
    _ok(cli("publish", str(signed["0.2.0"]), "--to", str(store), "--key", str(signed["key"])))
    assert json.loads((store / "index.json").read_text())["serial"] == 2
    assert not [p.name for p in store.iterdir() if p.name.endswith(".lock")]  # the lock is on the folder itself
    srv = StaticServer(store)
    try:
        assert "pulled c3ae_full 0.2.0" in _ok(_pull(cli, signed, srv.url, tmp_path / "a"))
        sh = _pull_sh(signed, srv.url, tmp_path / "sh")
        assert sh.returncode == 0 and "index serial 2" in sh.stdout, sh.stderr
        for name, data in old.items():  # the attacker replays the validly signed serial-1 index
            (store / name).write_bytes(data)
        r = _pull(cli, signed, srv.url, tmp_path / "b")
        one_line_error(r, 3, ("serial 1 is lower than 2", "rollback refused"))
        assert not (tmp_path / "b").exists()
        sh = _pull_sh(signed, srv.url, tmp_path / "sh2")
        assert sh.returncode != 0 and "rollback refused" in sh.stderr and not (tmp_path / "sh2").exists(), sh.stderr
    finally:
        srv.stop()


@needs_minisign
def test_expired_index_is_refused_unless_allowed(signed, tmp_path, state, cli):
    store = tmp_path / "store"
    _ok(cli("publish", str(signed["0.1.0"]), "--to", str(store), "--key", str(signed["key"]), "--expires-days", "1e-5"))
    time.sleep(2)
    one_line_error(_pull(cli, signed, store, tmp_path / "a"), 3, ("expired at", "--allow-expired"))
    sh = _pull_sh(signed, store, tmp_path / "sh")  # a plain folder works as BASE
    assert sh.returncode != 0 and "expired" in sh.stderr, sh.stderr
    assert "pulled c3ae_full 0.1.0" in _ok(_pull(cli, signed, store, tmp_path / "a", "c3ae_full", "--allow-expired"))
    assert _pull_sh(signed, store, tmp_path / "sh", ALLOW_EXPIRED="1").returncode == 0
    line = _ok(cli("refresh", "--to", str(store), "--key", str(signed["key"])))
    assert "serial 2" in line
    assert "pulled c3ae_full 0.1.0" in _ok(_pull(cli, signed, store, tmp_path / "c"))


@needs_minisign
def test_pre_releases_only_when_asked(signed, tmp_path, state, cli):
    store = tmp_path / "store"
    for v in ("0.1.0", "0.3.0rc1", "0.2.0"):
        _ok(cli("publish", str(signed[v]), "--to", str(store), "--key", str(signed["key"])))
    assert "pulled c3ae_full 0.2.0" in _ok(_pull(cli, signed, store, tmp_path / "a"))
    assert "pulled c3ae_full 0.2.0" in _ok(_pull(cli, signed, store, tmp_path / "b", "c3ae_full:>=0.2"))
    assert "pulled c3ae_full 0.3.0rc1" in _ok(_pull(cli, signed, store, tmp_path / "c", "c3ae_full", "--pre"))
    assert "pulled c3ae_full 0.3.0rc1" in _ok(_pull(cli, signed, store, tmp_path / "d", "c3ae_full:0.3.0rc1"))
    sh = _pull_sh(signed, store, tmp_path / "sh")
    assert sh.returncode == 0 and "pulled c3ae_full 0.2.0" in sh.stdout, sh.stderr
    sh = _pull_sh(signed, store, tmp_path / "sh2", PRE="1")
    assert sh.returncode == 0 and "pulled c3ae_full 0.3.0rc1" in sh.stdout, sh.stderr


@needs_minisign
def test_pull_never_replaces_the_users_folder(signed, tmp_path, state, cli):
    store, out = tmp_path / "store", tmp_path / "fw"
    _ok(cli("publish", str(signed["0.1.0"]), "--to", str(store), "--key", str(signed["key"])))
    mine = out / "c3ae_full-tiny"
    mine.mkdir(parents=True)
    (mine / "my-notes.txt").write_text("mine")
    one_line_error(_pull(cli, signed, store, out), 2, ("was not made by pull", "refusing"))
    sh = _pull_sh(signed, store, out)
    assert sh.returncode != 0 and "was not made by pull" in sh.stderr
    assert (mine / "my-notes.txt").read_text() == "mine" and sorted(os.listdir(mine)) == ["my-notes.txt"]
    shutil.rmtree(mine)
    _ok(_pull(cli, signed, store, out))
    assert (mine / ".c3ae-pull").is_file() and sorted(os.listdir(out)) == ["c3ae_full-tiny"]  # no lock file
    _ok(cli("verify", str(mine)))  # the marker is not a stray file
    (mine / "my-notes.txt").write_text("mine")
    one_line_error(_pull(cli, signed, store, out), 2, ("my-notes.txt", "--force"))
    sh = _pull_sh(signed, store, out)
    assert sh.returncode != 0 and "my-notes.txt" in sh.stderr and (mine / "my-notes.txt").is_file()
    assert _pull_sh(signed, store, out, FORCE="1").returncode == 0 and not (mine / "my-notes.txt").exists()
    (mine / "my-notes.txt").write_text("mine")
    _ok(_pull(cli, signed, store, out, "c3ae_full", "--force"))
    assert not (mine / "my-notes.txt").exists()


def test_failed_pull_leaves_no_empty_out(signed, tmp_path, state, cli):
    out = tmp_path / "new" / "fw"
    one_line_error(_pull(cli, signed, tmp_path / "nostore", out), 2, ("nostore",))
    assert not (tmp_path / "new").exists()


def test_keygen_force_never_writes_through_a_link(tmp_path, cli):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (tmp_path / "k.pub").symlink_to(target)
    for extra in ((), ("--force",)):
        r = cli("keygen", str(tmp_path / "k"), "--unencrypted", *extra)
        one_line_error(r, 2, ("k.pub", "symbolic link"))
    assert target.read_text() == "keep me" and not (tmp_path / "k.key").exists()
    (tmp_path / "k.pub").unlink()
    _ok(cli("keygen", str(tmp_path / "k"), "--unencrypted"))
    (tmp_path / "k.key").rename(tmp_path / "k.key.bak")
    (tmp_path / "k.key").symlink_to(target)
    one_line_error(cli("keygen", str(tmp_path / "k"), "--unencrypted", "--force"), 2, ("k.key", "symbolic link"))
    assert target.read_text() == "keep me"


@needs_minisign
def test_pull_sh_caps_an_endless_download(signed, tmp_path, state, cli):
    """A server that streams a file without end: pull.sh stops at the size the signed index gives, lands nothing."""
    store = tmp_path / "store"
    _ok(cli("publish", str(signed["0.1.0"]), "--to", str(store), "--key", str(signed["key"])))
    srv = StaticServer(store)
    srv.httpd.endless = ["c3ae_full_fp32.onnx"]
    try:
        t0 = time.time()
        sh = _pull_sh(signed, srv.url, tmp_path / "fw")
        assert sh.returncode != 0 and "larger than" in sh.stderr, sh.stderr
        assert time.time() - t0 < 60 and not (tmp_path / "fw").exists()
    finally:
        srv.stop()


# --- OCI ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path):
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry not installed (.ci/run installs it)")
    reg = Registry(tmp_path / "reg")
    yield reg
    reg.stop()


@needs_registry
def test_oci_replayed_list_and_deleted_tag(signed, registry, tmp_path, state, cli):
    from c3ae_edge.release.oci import LIST_TAG, MANIFEST_MT, OciStore
    from c3ae_edge.release.store import http_get, opener

    repo = f"oci://{registry.host}/acme/c3ae_full"
    _ok(cli("publish", str(signed["0.1.0"]), "--to", repo, "--key", str(signed["key"])))
    store = OciStore.parse(repo)
    old_list, _ = http_get(store._url(f"manifests/{LIST_TAG}"), {"Accept": MANIFEST_MT})
    _ok(cli("publish", str(signed["0.2.0"]), "--to", repo, "--key", str(signed["key"])))
    assert "pulled c3ae_full 0.2.0" in _ok(_pull(cli, signed, repo, tmp_path / "a"))
    # the 0.2.0 tag deleted: the signed list pins its manifest by digest, so latest is still 0.2.0
    import urllib.request

    url = store._url("manifests/0.2.0-tiny")
    digest = http_get(url, {"Accept": MANIFEST_MT})[1]["docker-content-digest"]
    opener(url).open(urllib.request.Request(store._url(f"manifests/{digest}"), method="DELETE"))
    r = _pull(cli, signed, repo, tmp_path / "b")
    one_line_error(r, 2, ("HTTP 404",))  # the manifest itself is gone: refused, never 0.1.0 in its place
    # the old, validly signed list replayed
    store._send("PUT", store._url(f"manifests/{LIST_TAG}"), old_list, {"Content-Type": MANIFEST_MT})
    one_line_error(_pull(cli, signed, repo, tmp_path / "c"), 3, ("serial 1 is lower than 2", "rollback refused"))
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


HOSTILE = {
    "tags-not-json": (b"<html>", "tag list is not a JSON object"),
    "tags-a-list": (b"[1, 2]", "tag list is not a JSON object"),
    "tags-not-names": (b'{"tags": [1, {"a": 2}]}', "not a list of names"),
    "list-manifest-not-object": (b'{"tags": ["c3ae-releases"]}', "is not a JSON object"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_registry_replies_are_one_line(case, signed, tmp_path, capsys):
    """A server speaking the registry API with hostile answers: one line naming the store, never an internal error."""
    import http.server
    import threading

    from conftest import run_main

    tags, want = HOSTILE[case]

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = b"{}" if self.path == "/v2/" else tags if self.path.endswith("/tags/list") else b'["x"]'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        repo = f"oci://127.0.0.1:{srv.server_address[1]}/acme/x"
        r = run_main(["releases", "--from", repo, "--key", str(signed["pub"])], capsys)
        one_line_error(r, r.code if r.code in (2, 3) else -1, (want,))
    finally:
        srv.shutdown()
        srv.server_close()


def test_verify_a_signed_archive_with_its_key(signed, tmp_path, cli):
    """verify BUNDLE.tar.gz --key PUB (issue 24, class 9): the signature inside the archive is checked, then every
    check of verify; the last line names the signing key. A re-packed archive with one byte changed is refused."""
    import io
    import tarfile

    from c3ae_edge.export.bundle import make_archive

    b = copy_bundle(signed["0.1.0"], tmp_path / "c3ae_full-0.1.0-tiny")
    arc = make_archive(b, 1700000000)
    r = cli("verify", str(arc), "--key", str(signed["pub"]))
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith(f"{arc}: signature OK, trusted comment: model:c3ae_full version:0.1.0 target:tiny")
    assert lines[-1].startswith(f"{arc}: signed by key "), lines[-1]
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(arc) as src, tarfile.open(bad, "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name.endswith("README.md"):
                data = data.replace(b"# ", b"#  ", 1)
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    one_line_error(cli("verify", str(bad), "--key", str(signed["pub"])), 3, ("bad.tar.gz", "README.md"))
