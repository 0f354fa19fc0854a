"""The OCI store: a bundle as one OCI artifact (one layer per file, layer digest = the file's SHA256SUMS entry),
spoken over the distribution HTTP API with urllib. Every manifest and blob is checked against its digest on pull."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

from c3ae_edge.errors import DataError, UsageError, VerificationError
from c3ae_edge.release import freshness
from c3ae_edge.release.sign import SIG_NAME, PublicKey, SecretKey, check
from c3ae_edge.release.store import FileEntry, Release, check_entry, fetch_url, http_get, opener, release_of

MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.c3ae-edge.bundle.v1"
SIG_TYPE = "application/vnd.c3ae-edge.signature.minisign.v1"
INDEX_MT = "application/vnd.oci.image.index.v1+json"
EMPTY = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "size": 2,
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
}
A = "dev.c3ae-edge."  # our annotation namespace
TITLE = "org.opencontainers.image.title"
_MT = {
    ".tflite": "model.tflite",
    ".onnx": "model.onnx",
    ".xml": "model.openvino.xml",
    ".bin": "model.openvino.bin",
    ".npy": "parity.npy",
    ".h": "c.header",
    ".md": "readme",
    ".py": "reference.python",
    ".txt": "calibration.list",
}
_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
LIST_TAG = "c3ae-releases"  # the signed release list: which tags hold which releases (a deleted tag cannot roll back)
LIST_TYPE = "application/vnd.c3ae-edge.releases.v1"
LIST_FILE = "releases.json"
LIST_SCHEMA = "c3ae-edge-oci-releases/1"
MAX_LIST_BYTES = 4 << 20


def media_type(name: str) -> str:
    if name == "SHA256SUMS":
        return "application/vnd.c3ae-edge.sha256sums.v1"
    if name == SIG_NAME:
        return SIG_TYPE
    if name == "manifest.json":
        return "application/vnd.c3ae-edge.manifest.v1+json"
    return f"application/vnd.c3ae-edge.{_MT.get(Path(name).suffix, 'file')}.v1"


@dataclass
class OciStore:
    """``oci://HOST[:PORT]/REPO[:TAG]``: plain HTTP for a loopback host, HTTPS otherwise."""

    location: str
    base: str
    repo: str
    tag: str | None
    headers: dict = field(default_factory=dict)
    _authorized: str = ""
    listing: freshness.Listing | None = None  # of the last release list read

    @property
    def state_location(self) -> str:
        return f"oci://{urlsplit(self.base).netloc}/{self.repo}"

    @classmethod
    def parse(cls, spec: str) -> OciStore:
        rest = spec.removeprefix("oci://")
        host, _, path = rest.partition("/")
        repo, tag = path, None
        if ":" in path.rsplit("/", 1)[-1]:
            repo, _, tag = path.rpartition(":")
        if not host or not _REPO.match(repo) or (tag is not None and not _TAG.match(tag)):
            raise UsageError(
                f"{spec}: expected oci://HOST[:PORT]/REPO[:TAG] (lower-case repository, tag [A-Za-z0-9._-])"
            )
        hostname = urlsplit(f"//{host}").hostname or ""
        scheme = "http" if hostname in ("127.0.0.1", "localhost", "::1") else "https"
        return cls(spec, f"{scheme}://{host}/v2/", repo, tag)

    def _authorize(self, actions: str) -> None:
        """Answer the registry's challenge once: Basic with $C3AE_OCI_USERNAME/$C3AE_OCI_PASSWORD, or a Bearer token
        from its token realm (anonymous unless those are set), as Docker Hub and GHCR want even for public pulls."""
        if self._authorized in (actions, "pull,push"):
            return
        self._authorized = actions
        try:
            with opener(self.base).open(urllib.request.Request(self.base, headers=self.headers), timeout=30):
                return
        except urllib.error.HTTPError as e:
            if e.code != 401:
                return
            challenge = e.headers.get("WWW-Authenticate", "")
        except (urllib.error.URLError, OSError) as e:
            raise DataError(f"{self.location}: {getattr(e, 'reason', e)}") from None
        user, pw = os.environ.get("C3AE_OCI_USERNAME"), os.environ.get("C3AE_OCI_PASSWORD", "")
        basic = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode() if user else None
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if basic is None:
                raise UsageError(
                    f"{self.location}: the registry wants credentials: set C3AE_OCI_USERNAME and C3AE_OCI_PASSWORD"
                )
            self.headers["Authorization"] = basic
            return
        p = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = p.get("realm", "")
        if scheme.lower() != "bearer" or urlsplit(realm).scheme not in ("http", "https"):
            raise DataError(f"{self.location}: unsupported authentication challenge {challenge!r}")
        if urlsplit(realm).scheme == "http" and self.base.startswith("https"):
            raise DataError(f"{self.location}: refusing a token realm over plain HTTP ({realm})")
        query = urlencode({"service": p.get("service", ""), "scope": f"repository:{self.repo}:{actions}"})
        body, _ = http_get(f"{realm}?{query}", {"Authorization": basic} if basic else {})
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise DataError(f"{self.location}: the token realm {realm} sent no token") from None
        self.headers["Authorization"] = f"Bearer {token}"

    def _url(self, path: str) -> str:
        return f"{self.base}{self.repo}/{path}"

    def _send(
        self, method: str, url: str, data: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(url, data=data, method=method, headers={**self.headers, **(headers or {})})
        try:
            with opener(url).open(req, timeout=60) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read(1 << 20)
        except urllib.error.HTTPError as e:
            if method == "HEAD" and e.code == 404:
                return 404, {}, b""
            raise DataError(f"{self.location}: {method} {urlsplit(url).path}: HTTP {e.code} {_reason(e)}") from None
        except (urllib.error.URLError, OSError) as e:
            raise DataError(f"{self.location}: {getattr(e, 'reason', e)}") from None

    def _push_blob(self, data: bytes, digest: str) -> None:
        if self._send("HEAD", self._url(f"blobs/{digest}"))[0] == 200:
            return
        _, hdrs, _ = self._send("POST", self._url("blobs/uploads/"), b"", {"Content-Length": "0"})
        loc = urljoin(self.base, hdrs.get("location", ""))
        sep = "&" if "?" in loc else "?"
        self._send("PUT", f"{loc}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"})

    def publish(
        self,
        bundle: Path,
        key: SecretKey | PublicKey | None,
        tag: str | None = None,
        force: bool = False,
        days: float = freshness.DEFAULT_EXPIRY_DAYS,
    ) -> Release:
        """Push every file as a blob, the manifest under TAG (default ``<version>-<target>``), then the release list
        (``c3ae-releases``) re-signed with the next serial: it needs the secret key."""
        if not isinstance(key, SecretKey):
            raise UsageError("publishing to a registry needs the secret key (--key KEY.key): it signs the release list")
        rel, _ = release_of(bundle, key.public)
        self._authorize("pull,push")
        tag = tag or self.tag or f"{rel.version}-{rel.target}"
        if not _TAG.match(tag) or tag == LIST_TAG:
            raise UsageError(f"{tag}: not a valid OCI tag for a release")
        doc = self._read_list(key.public) or {"schema": LIST_SCHEMA, "releases": []}
        if not force and tag in self.tags():
            raise UsageError(f"{self.location}: tag {tag} exists (releases are immutable; --force replaces it)")
        layers = []
        for f in rel.files:
            self._push_blob((bundle / f.name).read_bytes(), f"sha256:{f.sha256}")
            layers.append(
                {
                    "mediaType": media_type(f.name),
                    "digest": f"sha256:{f.sha256}",
                    "size": f.size,
                    "annotations": {TITLE: f.name},
                }
            )
        body = self._put_manifest(tag, layers, ARTIFACT_TYPE, annotations(rel))
        self._push_signature_referrer(body, next(x for x in layers if x["annotations"][TITLE] == SIG_NAME))
        entry = {"model": rel.model, "version": rel.version, "target": rel.target, "tag": tag}
        entry["digest"] = "sha256:" + hashlib.sha256(body).hexdigest()
        doc["releases"] = [e for e in doc["releases"] if e.get("tag") != tag] + [entry]
        self._write_list(doc, key, days)
        return Release(**{**rel.__dict__, "ref": tag})

    def refresh(self, key: SecretKey | PublicKey | None, days: float = freshness.DEFAULT_EXPIRY_DAYS):
        """Re-sign the release list as it is with the next serial and a new expiry. -> the new Listing."""
        if not isinstance(key, SecretKey):
            raise UsageError("refreshing a registry's release list needs the secret key (--key KEY.key)")
        self._authorize("pull,push")
        doc = self._read_list(key.public)
        if doc is None:
            raise DataError(f"{self.location}: no release list ({LIST_TAG}) to refresh: publish a bundle first")
        return self._write_list(doc, key, days)

    def _put_manifest(self, tag: str, layers: list, artifact_type: str, ann: dict) -> bytes:
        self._push_blob(b"{}", EMPTY["digest"])
        man = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MT,
            "artifactType": artifact_type,
            "config": EMPTY,
            "layers": layers,
            "annotations": ann,
        }
        body = json.dumps(man, separators=(",", ":"), sort_keys=True).encode()
        self._send("PUT", self._url(f"manifests/{tag}"), body, {"Content-Type": MANIFEST_MT})
        return body

    def _write_list(self, doc: dict, key: SecretKey, days: float) -> freshness.Listing:
        listing = freshness.next_listing(self.listing, days)
        doc.update(freshness.fields(listing))
        data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        sig = key.sign(data, f"c3ae-edge release list\tfile:{LIST_FILE}\t{freshness.comment(listing)}")
        sig_bytes = sig.text(f"c3ae-edge release list signature from key {key.public.id}").encode()
        layers = []
        for name, blob in ((LIST_FILE, data), (LIST_FILE + ".minisig", sig_bytes)):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            self._push_blob(blob, digest)
            layers.append(
                {"mediaType": media_type(name), "digest": digest, "size": len(blob), "annotations": {TITLE: name}}
            )
        self._put_manifest(LIST_TAG, layers, LIST_TYPE, {})
        self.listing = listing
        return listing

    def _read_list(self, pub: PublicKey) -> dict | None:
        """The signed release list, its signature checked before it is parsed; None if the registry has none."""
        if LIST_TAG not in self.tags():
            return None
        where = f"{self.location} {LIST_TAG}"
        man = self.manifest(LIST_TAG)
        layers = _titled(man, where)
        if set(layers) != {LIST_FILE, LIST_FILE + ".minisig"}:
            raise VerificationError(f"{where}: not a c3ae-edge release list (layers {sorted(layers)})")
        data = self._blob(layers[LIST_FILE], where)
        check(pub, data, self._blob(layers[LIST_FILE + ".minisig"], where).decode(errors="replace"), where)
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise VerificationError(f"{where}: not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("schema") != LIST_SCHEMA or not isinstance(doc.get("releases"), list):
            raise VerificationError(f"{where}: not a {LIST_SCHEMA} list")
        self.listing = freshness.read_listing(doc, where)
        return doc

    def _blob(self, layer: dict, where: str) -> bytes:
        """A small blob (the release list, its signature), size-capped and digest-checked."""
        digest, size = layer.get("digest"), layer.get("size")
        if not isinstance(digest, str) or not isinstance(size, int) or not 0 <= size <= MAX_LIST_BYTES:
            raise VerificationError(f"{where}: a layer's digest or size is malformed or too large")
        body, _ = http_get(self._url(f"blobs/{digest}"), self.headers, limit=size)
        if len(body) != size or "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise VerificationError(f"{where}: blob {digest[:19]}... does not match its digest or size (tampered)")
        return body

    def _push_signature_referrer(self, subject: bytes, sig_layer: dict) -> None:
        """The signature also as its own artifact whose ``subject`` is the bundle, listed under the OCI 1.1 referrers
        tag schema (``sha256-<hex>``) for registries without the referrers API (distribution 2.8)."""
        digest = "sha256:" + hashlib.sha256(subject).hexdigest()
        ref = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MT,
            "artifactType": SIG_TYPE,
            "config": EMPTY,
            "layers": [sig_layer],
            "subject": {"mediaType": MANIFEST_MT, "digest": digest, "size": len(subject)},
        }
        body = json.dumps(ref, separators=(",", ":"), sort_keys=True).encode()
        ref_digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self._send("PUT", self._url(f"manifests/{ref_digest}"), body, {"Content-Type": MANIFEST_MT})
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX_MT,
            "manifests": [
                {"mediaType": MANIFEST_MT, "digest": ref_digest, "size": len(body), "artifactType": SIG_TYPE}
            ],
        }
        self._send(
            "PUT",
            self._url(f"manifests/{referrers_tag(digest)}"),
            json.dumps(index, separators=(",", ":")).encode(),
            {"Content-Type": INDEX_MT},
        )

    def tags(self) -> list[str]:
        self._authorize("pull")
        try:
            body, _ = http_get(self._url("tags/list"), self.headers)
        except DataError as e:
            if "HTTP 404" in str(e):
                return []
            raise
        try:
            tags = json.loads(body).get("tags") or []
        except (ValueError, AttributeError):
            raise DataError(f"{self.location}: the registry's tag list is not a JSON object") from None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise DataError(f"{self.location}: the registry's tag list is not a list of names")
        return sorted(tags)

    def manifest(self, ref: str) -> dict:
        """A manifest by tag or digest; its bytes must hash to the digest the registry names (and to ``ref`` if one)."""
        self._authorize("pull")
        body, hdrs = http_get(self._url(f"manifests/{ref}"), {**self.headers, "Accept": MANIFEST_MT})
        got = "sha256:" + hashlib.sha256(body).hexdigest()
        want = ref if ref.startswith("sha256:") else hdrs.get("docker-content-digest", got)
        if got != want:
            raise VerificationError(
                f"{self.location}: manifest {ref} hashes to {got[:19]}..., not {want[:19]}... (tampered)"
            )
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise VerificationError(f"{self.location}: manifest {ref} is not JSON ({e})") from None
        if not isinstance(doc, dict):
            raise VerificationError(f"{self.location}: manifest {ref} is not a JSON object")
        return doc

    def releases(self, pub: PublicKey) -> list[Release]:
        """The releases the signed release list names, each manifest fetched by its listed digest (a moved or
        deleted tag changes nothing)."""
        doc = self._read_list(pub)
        if doc is None:
            raise VerificationError(
                f"{self.location}: no signed release list ({LIST_TAG}); publish with this c3ae-edge, which signs one"
            )
        out = []
        for e in doc["releases"]:
            try:
                tag, digest = e["tag"], e["digest"]
                want = (e["model"], e["version"], e["target"])
            except (KeyError, TypeError):
                raise VerificationError(f"{self.location} {LIST_TAG}: malformed entry {str(e)[:80]}") from None
            if self.tag and tag != self.tag:
                continue
            if not (isinstance(digest, str) and digest.startswith("sha256:") and _HEX.match(digest[7:])):
                raise VerificationError(f"{self.location} {LIST_TAG}: {tag}: digest {digest!r} is not sha256:<hex>")
            rel = release_from_manifest(self.manifest(digest), tag, self.location)
            if (rel.model, rel.version, rel.target) != want:
                raise VerificationError(f"{self.location}: {tag} is not the release the signed list names ({want})")
            out.append(rel)
        return out

    def fetch(self, rel: Release, dest: Path) -> None:
        self._authorize("pull")
        for f in rel.files:
            fetch_url(
                self._url(f"blobs/sha256:{f.sha256}"),
                dest / check_entry(f.name, rel.name),
                f.size,
                f.sha256,
                self.headers,
            )


def _reason(e: urllib.error.HTTPError) -> str:
    """The registry's own error message (distribution's ``{"errors": [{"message": ...}]}``), and what to do on
    401/403."""
    try:
        msg = "; ".join(x.get("message", "") for x in json.loads(e.read(4096))["errors"])
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        msg = str(e.reason)
    return msg + (" (set C3AE_OCI_USERNAME and C3AE_OCI_PASSWORD)" if e.code in (401, 403) else "")


def referrers_tag(digest: str) -> str:
    return digest.replace(":", "-")


def annotations(rel: Release) -> dict:
    """What index.json says about a release, as manifest annotations."""
    return {
        "org.opencontainers.image.title": rel.name,
        "org.opencontainers.image.version": rel.version,
        "org.opencontainers.image.created": rel.build_time,
        A + "model": rel.model,
        A + "target": rel.target,
        A + "weights_sha256": rel.weights_sha256,
        A + "signature.key_id": rel.key_id,
        A + "signature.trusted_comment": rel.trusted_comment,
        A + "files": json.dumps({f.name: [f.size, f.sha256] for f in rel.files}, sort_keys=True, separators=(",", ":")),
    }


def release_from_manifest(man: dict, tag: str, where: str) -> Release:
    ann = man.get("annotations") or {}
    try:
        files = tuple(
            FileEntry(lay["annotations"][TITLE], int(lay["size"]), lay["digest"].removeprefix("sha256:"))
            for lay in man["layers"]
        )
        if not all(_HEX.match(f.sha256) for f in files):
            raise ValueError("a layer digest is not sha256:<64 hex>")
        return Release(
            ann[A + "model"],
            ann["org.opencontainers.image.version"],
            ann[A + "target"],
            files,
            tag,
            ann.get(A + "weights_sha256", ""),
            ann.get("org.opencontainers.image.created", ""),
            ann.get(A + "signature.trusted_comment", ""),
            ann.get(A + "signature.key_id", ""),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise VerificationError(f"{where}: manifest {tag} is not a c3ae-edge bundle ({e!r})") from None


def _titled(man: dict, where: str) -> dict:
    """A manifest's layers by their title annotation."""
    try:
        return {lay["annotations"][TITLE]: lay for lay in man["layers"]}
    except (KeyError, TypeError, AttributeError):
        raise VerificationError(f"{where}: a layer has no title") from None
