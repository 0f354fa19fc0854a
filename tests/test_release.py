"""Signed releases end to end with real components: one real `export --target rpi --sign`, minisign (Debian) for
interoperability, Debian's docker-registry and a static HTTP server on 127.0.0.1, and pull.sh with no Python on PATH."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from release_servers import REGISTRY_BIN, Registry, StaticServer

CLI = [sys.executable, "-m", "c3ae_edge.cli"]
ENV = {**os.environ, "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


@pytest.fixture(scope="module", autouse=True)
def _pull_state(tmp_path_factory):
    """The serials pulls remember (release.freshness) go to a folder of this module, not the user's state."""
    ENV["C3AE_STATE_DIR"] = str(tmp_path_factory.mktemp("pull-state"))
    yield
    ENV.pop("C3AE_STATE_DIR", None)


MINISIGN = shutil.which("minisign")
needs_minisign = pytest.mark.skipif(
    MINISIGN is None, reason="minisign not installed (apt-get install minisign; .ci/run does)"
)
needs_registry = pytest.mark.skipif(
    REGISTRY_BIN is None, reason="docker-registry not installed (apt-get install docker-registry; .ci/run does)"
)

pytestmark = pytest.mark.slow  # full bundles, training or the data set: outside the fast tier


def cli(
    *args: str, env: dict | None = None, input: str | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=ROOT, env=env or ENV, input=input, timeout=timeout
    )


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def refused(r: subprocess.CompletedProcess, *words: str) -> str:
    """Non-zero exit, one line on stderr (no traceback) containing every word."""
    err = r.stderr.strip()
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in err and "internal error" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("c3ae-edge: error: "), err
    for w in words:
        assert w in last, last
    return last


@pytest.fixture(scope="session")
def keys(release_keys) -> dict[str, Path]:
    return release_keys  # tests/conftest.py: the keys that signed the shared rpi bundle


@pytest.fixture(scope="session")
def bundle(rpi_bundle: Path, keys, tmp_path_factory) -> Path:
    """The session's `c3ae-edge export --target rpi` (tests/conftest.py), copied and signed with `c3ae-edge sign`
    (``keys["key"]``)."""
    b = tmp_path_factory.mktemp("signed") / rpi_bundle.name
    shutil.copytree(rpi_bundle, b)
    ok(cli("sign", str(b), "--key", str(keys["key"])))
    assert (b / "SHA256SUMS.minisig").is_file()
    return b


def relabel(bundle: Path, version: str, key: Path, dest: Path) -> Path:
    """The same bundle released as another version (manifest version changed, checksums regenerated, signed again)."""
    from c3ae_edge.export.bundle import _sums
    from c3ae_edge.release.sign import SecretKey, sign_bundle

    b = dest / f"c3ae_full-{version}-rpi4"
    shutil.copytree(bundle, b)
    man = json.loads((b / "manifest.json").read_text())
    man["model"]["version"] = version
    (b / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    _sums(b)
    sign_bundle(b, SecretKey.load(key))
    return b


def flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def assert_clean(out: Path) -> None:
    """Nothing landed: no bundle, no temporary folder (only the lock file may exist)."""
    assert tree(out) == [], tree(out)


def sums_of(folder: Path) -> dict[str, str]:
    return {
        line.partition("  ")[2]: line.partition("  ")[0] for line in (folder / "SHA256SUMS").read_text().splitlines()
    }


# --- signing -------------------------------------------------------------------------------------------------------


@needs_minisign
def test_unencrypted_keys_interoperate_with_minisign(tmp_path: Path, keys):
    from c3ae_edge.release.sign import PublicKey, SecretKey, check

    msg = tmp_path / "f.txt"
    msg.write_bytes(b"c3ae-edge\n" * 100)
    sig = SecretKey.load(keys["key"]).sign(msg.read_bytes(), "model:x\tversion:1")
    (tmp_path / "f.txt.minisig").write_text(sig.text("test"))
    r = subprocess.run([MINISIGN, "-V", "-p", str(keys["pub"]), "-m", str(msg)], capture_output=True, text=True)
    assert r.returncode == 0 and "Trusted comment: model:x\tversion:1" in r.stdout, r.stderr
    # minisign signs with our (unencrypted, -W) secret key; we check its signature, and one of its own keys
    subprocess.run(
        [
            MINISIGN,
            "-S",
            "-W",
            "-s",
            str(keys["key"]),
            "-m",
            str(msg),
            "-x",
            str(tmp_path / "m.sig"),
            "-t",
            "from minisign",
        ],
        check=True,
        capture_output=True,
    )
    assert (
        check(PublicKey.load(keys["pub"]), msg.read_bytes(), (tmp_path / "m.sig").read_text(), "m.sig").trusted_comment
        == "from minisign"
    )
    subprocess.run(
        [MINISIGN, "-G", "-W", "-p", str(tmp_path / "ms.pub"), "-s", str(tmp_path / "ms.key")],
        check=True,
        capture_output=True,
    )
    theirs = SecretKey.load(tmp_path / "ms.key")
    assert theirs.public.pk == PublicKey.load(tmp_path / "ms.pub").pk
    (tmp_path / "f.txt.minisig").write_text(theirs.sign(msg.read_bytes(), "ours").text("t"))
    assert (
        subprocess.run([MINISIGN, "-V", "-p", str(tmp_path / "ms.pub"), "-m", str(msg)], capture_output=True).returncode
        == 0
    )
    # the other key, a changed byte, a changed trusted comment: minisign and we both refuse
    r = subprocess.run([MINISIGN, "-V", "-p", str(keys["other_pub"]), "-m", str(msg)], capture_output=True, text=True)
    assert r.returncode != 0
    with pytest.raises(Exception, match="signed by key"):
        check(PublicKey.load(keys["other_pub"]), msg.read_bytes(), (tmp_path / "f.txt.minisig").read_text(), "x")
    lines = (tmp_path / "f.txt.minisig").read_text().splitlines()
    lines[2] = "trusted comment: forged"
    with pytest.raises(Exception, match="trusted comment was altered"):
        check(theirs.public, msg.read_bytes(), "\n".join(lines) + "\n", "x")


@needs_minisign
def test_encrypted_key_scrypt_matches_minisign(tmp_path: Path):
    """keygen encrypts with minisign's scrypt parameters: minisign decrypts it; a wrong passphrase is one line."""
    env = {**ENV, "C3AE_KEY_PASSWORD": "correct horse"}
    out = ok(cli("keygen", str(tmp_path / "enc"), env=env))
    assert "encrypted" in out and "UNENCRYPTED" not in out
    key = tmp_path / "enc.key"
    assert key.read_text().startswith("untrusted comment: minisign encrypted secret key\n")
    assert key.stat().st_mode & 0o777 == 0o600
    refused(cli("keygen", str(tmp_path / "enc"), env=env), "exists")
    msg = tmp_path / "m.txt"
    msg.write_text("hello\n")
    r = subprocess.run(
        [MINISIGN, "-S", "-s", str(key), "-m", str(msg), "-t", "by minisign"],
        input="correct horse\n",
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert (
        subprocess.run(
            [MINISIGN, "-V", "-p", str(tmp_path / "enc.pub"), "-m", str(msg)], capture_output=True
        ).returncode
        == 0
    )
    from c3ae_edge.errors import UsageError
    from c3ae_edge.release.sign import SecretKey

    with pytest.raises(UsageError, match="wrong passphrase"):
        SecretKey.load(key, "wrong")


def test_export_sign_and_verify_key(bundle: Path, keys, tmp_path: Path):
    from c3ae_edge.release.sign import SIG_NAME

    sig = (bundle / SIG_NAME).read_text().splitlines()
    man = json.loads((bundle / "manifest.json").read_text())
    assert sig[2] == (
        "trusted comment: model:c3ae_full\tversion:0.1.0\ttarget:rpi4\tweights_sha256:"
        f"{man['model']['weights_sha256']}\tbuild_time:2023-11-14T22:13:20Z\tfile:SHA256SUMS"
    )
    assert SIG_NAME not in sums_of(bundle)
    out = ok(cli("verify", str(bundle), "--key", str(keys["pub"])))
    assert out.splitlines()[0].startswith(
        f"{bundle}: signature OK, trusted comment: model:c3ae_full version:0.1.0 target:rpi4"
    )
    if MINISIGN:  # the Debian tool agrees
        r = subprocess.run(
            [MINISIGN, "-V", "-p", str(keys["pub"]), "-m", str(bundle / "SHA256SUMS")], capture_output=True, text=True
        )
        assert r.returncode == 0 and "target:rpi4" in r.stdout
    print("\nverify --key, good bundle:", out.splitlines()[0])
    # another key
    print("wrong key:", refused(cli("verify", str(bundle), "--key", str(keys["other_pub"])), "not by the trusted key"))
    # a file changed and SHA256SUMS regenerated: the checksums hold, the signature does not
    from c3ae_edge.export.bundle import _sums

    b = tmp_path / bundle.name
    shutil.copytree(bundle, b)
    flip(b / "c3ae_full_int8.tflite", 2000)
    _sums(b)
    print(
        "regenerated SHA256SUMS:", refused(cli("verify", str(b), "--key", str(keys["pub"])), "signature does not match")
    )
    # no signature
    shutil.rmtree(b)
    shutil.copytree(bundle, b)
    (b / SIG_NAME).unlink()
    print("missing signature:", refused(cli("verify", str(b), "--key", str(keys["pub"])), "unsigned bundle"))
    # `sign` re-signs an intact bundle with another key; that key verifies it, the first no longer does
    ok(cli("sign", str(b), "--key", str(keys["other_key"])))
    ok(cli("verify", str(b), "--key", str(keys["other_pub"])))
    refused(cli("verify", str(b), "--key", str(keys["pub"])), "not by the trusted key")
    flip(b / "manifest.json", 10)
    refused(cli("sign", str(b), "--key", str(keys["key"])), "checksum mismatch for manifest.json")


# --- static index ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def static_store(tmp_path_factory, bundle: Path, keys):
    """A folder store with 0.1.0 (the export), 0.1.5 and 0.2.0 (the same model relabelled and signed), served over
    HTTP."""
    work = tmp_path_factory.mktemp("static")
    store = work / "store"
    timings = {}
    for v in ("0.2.0", "0.1.5", None):
        b = bundle if v is None else relabel(bundle, v, keys["key"], work)
        t0 = time.perf_counter()
        out = ok(cli("publish", str(b), "--to", str(store), "--key", str(keys["key"])))
        timings[v or "0.1.0"] = time.perf_counter() - t0
        assert out.startswith("published c3ae_full-")
    print(f"\npublish to a folder (CLI, wall incl. interpreter start): {timings}")
    srv = StaticServer(store)
    yield store, srv
    srv.stop()


def test_static_publish_layout_and_list(static_store, bundle: Path, keys):
    store, srv = static_store
    names = tree(store)
    for v in ("0.1.0", "0.1.5", "0.2.0"):
        assert f"c3ae_full-{v}-rpi4.tar.gz" in names and f"c3ae_full-{v}-rpi4/SHA256SUMS.minisig" in names
    for f in ("index.json", "index.json.minisig", "index.txt", "index.txt.minisig", "pull.sh"):
        assert f in names
    doc = json.loads((store / "index.json").read_text())
    rel = next(e for e in doc["releases"] if e["version"] == "0.1.0")
    assert {f["name"]: f["sha256"] for f in rel["files"] if f["name"] in sums_of(bundle)} == sums_of(bundle)
    assert rel["signature"]["trusted_comment"] == (bundle / "SHA256SUMS.minisig").read_text().splitlines()[
        2
    ].removeprefix("trusted comment: ")
    assert doc["pull_sh"]["sha256"] == hashlib.sha256((store / "pull.sh").read_bytes()).hexdigest()
    # the archive is deterministic: publishing again elsewhere gives the same bytes
    again = store.parent / "again"
    ok(cli("publish", str(bundle), "--to", str(again), "--key", str(keys["key"])))
    assert (again / "c3ae_full-0.1.0-rpi4.tar.gz").read_bytes() == (store / "c3ae_full-0.1.0-rpi4.tar.gz").read_bytes()
    refused(cli("publish", str(bundle), "--to", str(again), "--key", str(keys["key"])), "already published")
    refused(cli("publish", str(bundle), "--to", str(again), "--key", str(keys["other_key"])), "not by the trusted key")
    refused(cli("publish", str(bundle), "--to", srv.url, "--key", str(keys["key"])), "read-only")
    lines = ok(cli("releases", "--from", srv.url, "--key", str(keys["pub"]))).splitlines()
    assert [ln.split()[:3] for ln in lines] == [["c3ae_full", v, "rpi4"] for v in ("0.1.0", "0.1.5", "0.2.0")]
    assert (store / "index.txt").read_text().splitlines()[-1].split()[:3] == ["c3ae_full", "0.2.0", "rpi4"]


def test_static_pull_versions_and_downgrade(static_store, keys, tmp_path: Path):
    from c3ae_edge.release.sign import PublicKey, verify_signed_bundle

    _, srv = static_store
    out = tmp_path / "fw"

    def pull(spec: str, *extra: str, src: str = srv.url) -> subprocess.CompletedProcess:
        return cli("pull", spec, "--target", "rpi", "--from", src, "--key", str(keys["pub"]), "--out", str(out), *extra)

    t0 = time.perf_counter()
    line = ok(pull("c3ae_full:>=0.1,<0.2"))
    print(f"\nstatic pull over HTTP (CLI wall {time.perf_counter() - t0:.2f}s): {line.strip()}")
    assert "pulled c3ae_full 0.1.5 rpi4" in line
    final = out / "c3ae_full-rpi4"
    assert verify_signed_bundle(final, PublicKey.load(keys["pub"])).fields()["version"] == "0.1.5"
    assert "pulled c3ae_full 0.2.0 rpi4" in ok(pull("c3ae_full"))
    print("downgrade:", refused(pull("c3ae_full:0.1.0"), "refusing to downgrade", "0.2.0"))
    assert json.loads((final / "manifest.json").read_text())["model"]["version"] == "0.2.0"
    assert "pulled c3ae_full 0.1.0 rpi4" in ok(pull("c3ae_full:0.1.0", "--allow-downgrade"))
    assert "(already there; re-checked)" in ok(pull("c3ae_full:0.1.0", "--allow-downgrade"))
    assert sorted(p.name for p in out.iterdir()) == ["c3ae_full-rpi4"]  # no lock file left
    refused(pull("c3ae_full:0.9"), "no c3ae_full 0.9 for rpi4", "0.1.0, 0.1.5, 0.2.0")
    refused(pull("nosuch"), "no release of nosuch for target rpi4")
    refused(pull("c3ae_full:>=x"), "not a version")
    # a folder works as a source too
    assert "pulled c3ae_full 0.2.0 rpi4" in ok(pull("c3ae_full:latest", src=str(static_store[0])))


def _copy_store(static_store, tmp_path: Path) -> tuple[Path, StaticServer]:
    store = tmp_path / "store"
    shutil.copytree(static_store[0], store)
    return store, StaticServer(store)


@pytest.mark.parametrize(
    "case", ["blob", "index", "wrong_key", "no_index_sig", "no_bundle_sig", "sums_swapped", "truncated", "short"]
)
def test_static_tamper_cases_land_nothing(static_store, keys, tmp_path: Path, case: str):
    store, srv = _copy_store(static_store, tmp_path)
    out = tmp_path / "fw"
    pub = keys["pub"]
    b = store / "c3ae_full-0.2.0-rpi4"
    want = {
        "blob": "is not the listed",
        "index": "signature does not match",
        "wrong_key": "not by the trusted key",
        "no_index_sig": "unsigned index",
        "no_bundle_sig": "SHA256SUMS.minisig: missing from the store",
        "sums_swapped": "is not the listed",
        "truncated": "truncated (",
        "short": "truncated (",
    }[case]
    if case == "blob":  # a flipped byte in the stored model file
        flip(b / "c3ae_full_int8.tflite")
    elif case == "index":  # index.json edited (a digest swapped for the tampered file's) without the key
        flip(b / "c3ae_full_int8.tflite")
        doc = json.loads((store / "index.json").read_text())
        for e in doc["releases"]:
            for f in e["files"]:
                if e["version"] == "0.2.0" and f["name"] == "c3ae_full_int8.tflite":
                    f["sha256"] = hashlib.sha256((b / f["name"]).read_bytes()).hexdigest()
        (store / "index.json").write_text(json.dumps(doc, indent=1) + "\n")
    elif case == "wrong_key":
        pub = keys["other_pub"]
    elif case == "no_index_sig":
        (store / "index.json.minisig").unlink()
    elif case == "no_bundle_sig":
        (b / "SHA256SUMS.minisig").unlink()
    elif case == "sums_swapped":  # a file changed and SHA256SUMS regenerated in the store
        from c3ae_edge.export.bundle import _sums

        flip(b / "c3ae_full_int8.tflite")
        _sums(b)
    elif case == "truncated":  # the connection drops half-way through a file
        srv.httpd.truncate.append("c3ae_full_int8.tflite")
    elif case == "short":  # the server sends a shorter file (its own Content-Length)
        data = (b / "c3ae_full_int8.tflite").read_bytes()
        (b / "c3ae_full_int8.tflite").write_bytes(data[:-100])
    try:
        r = cli("pull", "c3ae_full", "--target", "rpi4", "--from", srv.url, "--key", str(pub), "--out", str(out))
    finally:
        srv.stop()
    print(f"\n{case}: {refused(r, want)}")
    assert_clean(out)


def test_interrupted_pull_leaves_nothing(static_store, keys, tmp_path: Path):
    """SIGTERM (a CI timeout) mid-download: nothing in --out; SIGKILL: only a stale temp folder, removed by the next
    pull."""
    store, srv = _copy_store(static_store, tmp_path)
    out = tmp_path / "fw"
    args = [
        *CLI,
        "pull",
        "c3ae_full",
        "--target",
        "rpi4",
        "--from",
        srv.url,
        "--key",
        str(keys["pub"]),
        "--out",
        str(out),
    ]
    srv.httpd.stall.append("c3ae_full_int8.tflite")
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            srv.httpd.stalled.clear()
            srv.httpd.release.clear()
            p = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert srv.httpd.stalled.wait(120), p.communicate()[1]
            assert any(n.startswith(".pull-") for n in os.listdir(out))  # it is mid-download, in its temp folder
            p.send_signal(sig)
            _, err = p.communicate(timeout=60)
            srv.httpd.release.set()
            if sig == signal.SIGTERM:
                assert (
                    p.returncode == 130
                    and err.strip().splitlines()[-1] == f"c3ae-edge: pull interrupted: nothing was installed in {out}"
                ), err
                print(
                    f"\nSIGTERM mid-download: exit {p.returncode}, {err.strip().splitlines()[-1]!r}, --out holds "
                    f"{tree(out)}"
                )
                assert_clean(out)
            else:
                assert not (out / "c3ae_full-rpi4").exists()
                stale = [n for n in os.listdir(out) if n.startswith(".pull-")]
                print(f"SIGKILL mid-download: --out holds {sorted(os.listdir(out))}")
        srv.httpd.stall.clear()
        ok(subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True))
        assert stale and sorted(os.listdir(out)) == ["c3ae_full-rpi4"]
    finally:
        srv.stop()


def test_concurrent_pulls_into_one_folder(static_store, keys, tmp_path: Path):
    from c3ae_edge.release.sign import PublicKey, verify_signed_bundle

    out = tmp_path / "fw"
    _, srv = static_store
    args = [
        *CLI,
        "pull",
        "c3ae_full",
        "--target",
        "rpi4",
        "--from",
        srv.url,
        "--key",
        str(keys["pub"]),
        "--out",
        str(out),
    ]
    procs = [
        subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    res = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-500:] for r in res]
    print("\nthree concurrent pulls:", [r[0].strip() for r in res])
    assert sorted(os.listdir(out)) == ["c3ae_full-rpi4"]
    assert verify_signed_bundle(out / "c3ae_full-rpi4", PublicKey.load(keys["pub"])).fields()["version"] == "0.2.0"


# --- OCI registry ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry (Debian package, distribution 2.8) is not installed: OCI store tests skipped")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def oci_repo(registry, bundle: Path, keys, tmp_path_factory) -> str:
    """0.1.0 (the export) and 0.2.0 (relabelled) pushed to oci://127.0.0.1:PORT/acme/c3ae_full."""
    repo = f"oci://{registry.host}/acme/c3ae_full"
    work = tmp_path_factory.mktemp("oci")
    for b in (bundle, relabel(bundle, "0.2.0", keys["key"], work)):
        t0 = time.perf_counter()
        out = ok(cli("publish", str(b), "--to", repo, "--key", str(keys["key"])))
        print(f"\npush (CLI wall {time.perf_counter() - t0:.2f}s): {out.strip()}")
    return repo


@needs_registry
def test_oci_manifest_is_one_layer_per_file(oci_repo: str, registry, bundle: Path, keys, tmp_path: Path):
    from c3ae_edge.release.oci import ARTIFACT_TYPE, INDEX_MT, MANIFEST_MT, SIG_TYPE, OciStore, referrers_tag
    from c3ae_edge.release.store import http_get

    store = OciStore.parse(oci_repo)
    tags = store.tags()
    assert [t for t in tags if not t.startswith("sha256-")] == ["0.1.0-rpi4", "0.2.0-rpi4", "c3ae-releases"]
    raw, hdrs = http_get(store._url("manifests/0.1.0-rpi4"), {"Accept": MANIFEST_MT})
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert hdrs["docker-content-digest"] == digest and referrers_tag(digest) in tags
    man = store.manifest("0.1.0-rpi4")
    # the signature is a layer and also its own artifact referring to the bundle (OCI 1.1 referrers tag schema)
    index = json.loads(http_get(store._url(f"manifests/{referrers_tag(digest)}"), {"Accept": INDEX_MT})[0])
    assert [m["artifactType"] for m in index["manifests"]] == [SIG_TYPE]
    sig_art = store.manifest(index["manifests"][0]["digest"])
    assert sig_art["subject"]["digest"] == digest
    assert (
        sig_art["layers"][0]["digest"]
        == f"sha256:{hashlib.sha256((bundle / 'SHA256SUMS.minisig').read_bytes()).hexdigest()}"
    )
    assert man["artifactType"] == ARTIFACT_TYPE and man["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    layers = {lay["annotations"]["org.opencontainers.image.title"]: lay for lay in man["layers"]}
    assert sorted(layers) == sorted([*sums_of(bundle), "SHA256SUMS", "SHA256SUMS.minisig"])
    for name, digest in sums_of(bundle).items():
        assert layers[name]["digest"] == f"sha256:{digest}" and layers[name]["size"] == (bundle / name).stat().st_size
    assert layers["c3ae_full_int8.tflite"]["mediaType"] == "application/vnd.c3ae-edge.model.tflite.v1"
    assert layers["SHA256SUMS.minisig"]["mediaType"] == "application/vnd.c3ae-edge.signature.minisign.v1"
    ann = man["annotations"]
    assert (ann["dev.c3ae-edge.model"], ann["org.opencontainers.image.version"], ann["dev.c3ae-edge.target"]) == (
        "c3ae_full",
        "0.1.0",
        "rpi4",
    )
    assert ann["dev.c3ae-edge.signature.trusted_comment"].startswith("model:c3ae_full\tversion:0.1.0\ttarget:rpi4\t")
    lines = ok(cli("releases", "--from", oci_repo, "--key", str(keys["pub"]))).splitlines()
    assert [ln.split()[:3] for ln in lines] == [["c3ae_full", "0.1.0", "rpi4"], ["c3ae_full", "0.2.0", "rpi4"]]
    refused(cli("publish", str(bundle), "--to", oci_repo, "--key", str(keys["key"])), "tag 0.1.0-rpi4 exists")
    refused(cli("publish", str(bundle), "--to", oci_repo, "--key", str(keys["other_key"])), "not by the trusted key")
    refused(cli("publish", str(bundle), "--to", oci_repo, "--key", str(keys["pub"])), "needs the secret key")
    damaged = tmp_path / bundle.name
    shutil.copytree(bundle, damaged)
    flip(damaged / "c3ae_model.h")
    refused(
        cli("publish", str(damaged), "--to", f"{oci_repo}:damaged", "--key", str(keys["key"])),
        "checksum mismatch for c3ae_model.h",
    )


@needs_registry
def test_oci_pull_versions_and_downgrade(oci_repo: str, keys, tmp_path: Path):
    from c3ae_edge.release.sign import PublicKey, verify_signed_bundle

    out = tmp_path / "fw"

    def pull(spec: str, *extra: str) -> subprocess.CompletedProcess:
        return cli(
            "pull", spec, "--target", "rpi4", "--from", oci_repo, "--key", str(keys["pub"]), "--out", str(out), *extra
        )

    t0 = time.perf_counter()
    line = ok(pull("c3ae_full:0.1.0"))
    print(f"\nOCI pull (CLI wall {time.perf_counter() - t0:.2f}s): {line.strip()}")
    assert "pulled c3ae_full 0.1.0 rpi4" in line
    assert "pulled c3ae_full 0.2.0 rpi4 -> " in ok(pull("c3ae_full"))
    assert verify_signed_bundle(out / "c3ae_full-rpi4", PublicKey.load(keys["pub"])).fields()["version"] == "0.2.0"
    print("OCI downgrade:", refused(pull("c3ae_full:<0.2"), "refusing to downgrade"))
    assert "pulled c3ae_full 0.1.0" in ok(pull("c3ae_full:<0.2", "--allow-downgrade"))


def _push_raw(store, man: dict, tag: str) -> None:
    store._send("PUT", store._url(f"manifests/{tag}"), json.dumps(man).encode(), {"Content-Type": man["mediaType"]})


@needs_registry
@pytest.mark.parametrize("case", ["blob", "manifest", "wrong_key", "no_sig", "sums_swapped", "relabelled"])
def test_oci_tamper_cases_land_nothing(oci_repo: str, registry, bundle: Path, keys, tmp_path: Path, case: str):
    """Each case gets its own repository, so the stored blobs it damages are its own."""
    from c3ae_edge.export.bundle import _sums
    from c3ae_edge.release.oci import OciStore

    repo = f"oci://{registry.host}/tamper/{case}"
    b = tmp_path / bundle.name
    shutil.copytree(bundle, b)
    flip(b / "c3ae_full_int8.tflite", 100 + len(case))  # a blob no other case shares
    _sums(b)
    if case != "sums_swapped":
        from c3ae_edge.release.sign import SecretKey, sign_bundle

        sign_bundle(b, SecretKey.load(keys["key"]))
    _push_unchecked(repo, b, keys["key"])  # the tampered bundle lands in the registry as it is
    store = OciStore.parse(repo)
    man = store.manifest("0.1.0-rpi4")
    pub, want = keys["pub"], None
    if case == "blob":  # a flipped byte in the registry's stored blob
        digest = next(
            lay["digest"]
            for lay in man["layers"]
            if lay["annotations"]["org.opencontainers.image.title"] == "c3ae_full_int8.tflite"
        )
        flip(registry.blob_file(digest))
        want = "is not the listed"
    elif case == "manifest":  # the stored manifest edited in place (its tag still names the old digest)
        digest = "sha256:" + hashlib.sha256(json.dumps(man, separators=(",", ":"), sort_keys=True).encode()).hexdigest()
        f = registry.blob_file(digest)
        f.write_bytes(f.read_bytes().replace(b'"0.1.0"', b'"0.1.9"'))
        want = "hashes to"
    elif case == "wrong_key":
        pub, want = keys["other_pub"], "not by the trusted key"
    elif case == "no_sig":  # a manifest without the signature layer, pushed without the key: not in the signed list
        man["layers"] = [
            lay for lay in man["layers"] if lay["annotations"]["org.opencontainers.image.title"] != "SHA256SUMS.minisig"
        ]
        man["annotations"]["org.opencontainers.image.version"] = "0.1.1"
        _push_raw(store, man, "0.1.1-rpi4")
    elif case == "sums_swapped":  # file changed, SHA256SUMS regenerated, the old signature kept
        want = "signature does not match"
    elif case == "relabelled":  # a signed 0.1.0 offered as 0.3.0 (a rollback in disguise), over the 0.1.0 tag too
        man["annotations"]["org.opencontainers.image.version"] = "0.3.0"
        _push_raw(store, man, "0.3.0-rpi4")
        _push_raw(store, man, "0.1.0-rpi4")
    out = tmp_path / "fw"
    r = cli("pull", "c3ae_full", "--target", "rpi4", "--from", repo, "--key", str(pub), "--out", str(out))
    if want is None:  # tags pushed without the key are not in the signed release list: pull never sees them
        assert "pulled c3ae_full 0.1.0 rpi4" in ok(r)
        return
    print(f"\nOCI {case}: {refused(r, want)}")
    assert_clean(out)


def _push_unchecked(repo: str, bundle: Path, key: Path) -> None:
    """Push a bundle as publish does but without checking its signature (the registry holds whatever is pushed)."""
    from unittest import mock

    from c3ae_edge.release import oci, store
    from c3ae_edge.release.sign import SecretKey

    with mock.patch.object(oci, "release_of", lambda b, pub: store.release_of(b, None)):
        oci.OciStore.parse(repo).publish(bundle, SecretKey.load(key))


# --- pull.sh: firmware CI without Python -----------------------------------------------------------------------------

SH_TOOLS = (
    "sh",
    "curl",
    "sha256sum",
    "minisign",
    "awk",
    "mkdir",
    "rm",
    "mv",
    "cat",
    "wc",
    "tr",
    "printf",
    "sleep",
    "head",
    "rmdir",
)


def _no_python_path(tmp_path: Path) -> Path:
    """A PATH holding only the tools pull.sh may use (links), and no python."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for t in SH_TOOLS:
        src = shutil.which(t)
        if src is None:
            pytest.skip(f"{t} is not installed")
        (bindir / t).symlink_to(src)
    assert not any("python" in p.name for p in bindir.iterdir())
    return bindir


@needs_minisign
def test_pull_sh_without_python(static_store, keys, tmp_path: Path):
    store, _ = static_store
    bindir = _no_python_path(tmp_path)
    env = {"PATH": str(bindir), "HOME": str(tmp_path)}
    tstore, srv = _copy_store(static_store, tmp_path)
    script = tstore / "pull.sh"  # the copy every published release carries
    from importlib import resources

    assert script.read_bytes() == resources.files("c3ae_edge.release").joinpath("pull.sh").read_bytes()
    out = tmp_path / "fw"

    def run(spec: str, pub: Path = keys["pub"], **extra) -> subprocess.CompletedProcess:
        r = subprocess.run(
            ["sh", str(script), srv.url, spec, "rpi4", str(pub), str(out)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            executable=str(bindir / "sh"),
        )
        r.args = spec
        return r

    try:
        r = run("c3ae_full:0.1.5")
        assert r.returncode == 0, r.stderr
        print(f"\npull.sh: {r.stdout.strip()}")
        final = out / "c3ae_full-rpi4"
        assert sums_of(final) == sums_of(tstore / "c3ae_full-0.1.5-rpi4")
        assert "version:0.1.5" in (final / "SHA256SUMS.minisig").read_text()
        assert run("c3ae_full").returncode == 0 and "version:0.2.0" in (final / "SHA256SUMS.minisig").read_text()
        r = run("c3ae_full:0.1.0")
        assert r.returncode != 0 and "refusing to downgrade" in r.stderr, r.stderr
        print(f"pull.sh downgrade: {r.stderr.strip()}")
        assert run("c3ae_full:0.1.0", ALLOW_DOWNGRADE="1").returncode == 0
        cmd = ["sh", str(script), srv.url, "c3ae_full:0.1.5", "rpi4", str(keys["pub"]), str(out)]
        procs = [
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
        ]
        assert [p.wait(120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
        assert sorted(os.listdir(out)) == ["c3ae_full-rpi4"] and sums_of(final) == sums_of(
            tstore / "c3ae_full-0.1.5-rpi4"
        )
        assert run("c3ae_full:0.1.0", ALLOW_DOWNGRADE="1").returncode == 0
        r = run("c3ae_full", pub=keys["other_pub"])
        assert r.returncode != 0 and "signature check failed" in r.stderr
        print(f"pull.sh wrong key: {r.stderr.strip().splitlines()[-1]}")
        flip(tstore / "c3ae_full-0.2.0-rpi4" / "c3ae_full_int8.tflite")
        r = run("c3ae_full", ALLOW_DOWNGRADE="1")
        assert r.returncode != 0 and "sha256 mismatch" in r.stderr, r.stderr
        print(f"pull.sh tampered blob: {r.stderr.strip().splitlines()[-1]}")
        assert "version:0.1.0" in (final / "SHA256SUMS.minisig").read_text()  # the installed one is untouched
        assert sorted(os.listdir(out)) == ["c3ae_full-rpi4"]
    finally:
        srv.stop()


def test_help_imports_neither_torch_nor_cryptography():
    code = (
        "import sys; sys.argv = ['c3ae-edge', '--help']\nfrom c3ae_edge import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'cryptography', 'packaging') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "[]", r.stdout[-500:] + r.stderr
    for cmd in ("keygen", "sign", "publish", "releases", "pull"):
        assert cmd in r.stdout


@needs_registry
@pytest.mark.parametrize("kind", ["basic", "token"])
def test_oci_registry_with_authentication(kind: str, bundle: Path, keys, tmp_path: Path):
    """htpasswd (Basic) and token auth (a Bearer token realm, as Docker Hub and GHCR use): anonymous pushes are
    refused in one line, credentials from the environment push, and pulls work (anonymously where the realm allows)."""
    from release_servers import TokenServer, htpasswd_auth

    token = TokenServer(tmp_path, "ci", "s3cret") if kind == "token" else None
    auth = token.config if token else htpasswd_auth(tmp_path, "ci", "s3cret")
    if not auth:
        pytest.skip("this Python cannot write a bcrypt htpasswd (crypt module): Basic auth test skipped")
    reg = Registry(tmp_path, auth)
    creds = {**ENV, "C3AE_OCI_USERNAME": "ci", "C3AE_OCI_PASSWORD": "s3cret"}
    try:
        repo = f"oci://{reg.host}/acme/c3ae_full"
        push = ["publish", str(bundle), "--to", repo, "--key", str(keys["key"])]
        print(f"\n{kind}, anonymous push: {refused(cli(*push), 'C3AE_OCI_USERNAME')}")
        refused(cli(*push, env={**creds, "C3AE_OCI_PASSWORD": "wrong"}), "HTTP 401")
        ok(cli(*push, env=creds))
        pull = [
            "pull",
            "c3ae_full:0.1.0",
            "--target",
            "rpi4",
            "--from",
            repo,
            "--key",
            str(keys["pub"]),
            "--out",
            str(tmp_path / "fw"),
        ]
        if token:  # the realm hands anonymous callers pull rights
            ok(cli(*pull))
            assert {r["scope"] for r in token.requests} == {
                "repository:acme/c3ae_full:pull,push",
                "repository:acme/c3ae_full:pull",
            }
        else:
            refused(cli(*pull), "C3AE_OCI_USERNAME")
            ok(cli(*pull, env=creds))
        assert sums_of(tmp_path / "fw" / "c3ae_full-rpi4") == sums_of(bundle)
    finally:
        reg.stop()
        if token:
            token.stop()
