"""The registry client against an in-process fake registry (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from banger.errors import NotFound, UserError
from banger.image.blobcache import BlobCache
from banger.image.oci import cache_prune, prune_message, pull_oci
from banger.image.reference import parse_reference
from banger.image.registry import (
    MAX_MANIFEST_BYTES,
    RegistryClient,
    base_url,
    choose_platform,
    find_credentials,
    host_platform,
    parse_www_authenticate,
)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


class FakeRegistry:
    """Serves one repository; optionally demands a bearer token."""

    def __init__(self, *, token: bool = False) -> None:
        self.token = token
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.requests: list[httpx.Request] = []

    def add_blob(self, data: bytes) -> dict:
        digest = _digest(data)
        self.blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    def add_image(self, tag: str, layers: list[bytes], arch: str = "amd64") -> str:
        config = {"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]}}
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": self.add_blob(json.dumps(config).encode()),
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **self.add_blob(x)}
                for x in layers
            ],
        }
        body = json.dumps(manifest).encode()
        self.manifests[tag] = self.manifests[_digest(body)] = (manifest["mediaType"], body)
        return _digest(body)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "auth.example":
            return httpx.Response(200, json={"token": "tok"})
        if self.token and request.headers.get("authorization") != "Bearer tok":
            challenge = 'Bearer realm="https://auth.example/token",service="reg"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        parts = request.url.path.split("/")
        if parts[-2] == "manifests" and parts[-1] in self.manifests:
            media_type, body = self.manifests[parts[-1]]
            return httpx.Response(200, content=body, headers={"Content-Type": media_type})
        if parts[-2] == "blobs" and parts[-1] in self.blobs:
            return httpx.Response(200, content=self.blobs[parts[-1]])
        return httpx.Response(404)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def _pull(fake: FakeRegistry, ref: str, tmp: Path, **kw):
    return asyncio.run(
        pull_oci(
            ref,
            cache_dir=tmp / "cache",
            dest_tree=tmp / "tree",
            progress=lambda _m: None,
            transport=fake.transport(),
            **kw,
        )
    )


def test_www_authenticate_parsing() -> None:
    scheme, params = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/debian:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/debian:pull,push",
    }
    assert parse_www_authenticate('Basic realm="x \\"y\\""') == ("basic", {"realm": 'x "y"'})


def test_platform_choice() -> None:
    index = {
        "manifests": [
            {"digest": "a", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "u", "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": "b", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "c", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        ]
    }
    assert host_platform("x86_64") == ("amd64", "")
    assert choose_platform(index, "x86_64")["digest"] == "b"
    assert choose_platform(index, "aarch64")["digest"] == "a"
    assert choose_platform(index, "armv7l")["digest"] == "c"
    with pytest.raises(NotFound) as err:
        choose_platform(index, "s390x")
    assert "linux/s390x" in err.value.message
    assert err.value.hint == "available platforms: linux/arm64/v8, linux/amd64, linux/arm/v7"


def test_credentials_from_auth_files(tmp_path: Path) -> None:
    def auth_file(name: str, key: str, user: str) -> Path:
        path = tmp_path / name
        secret = base64.b64encode(f"{user}:pw:with:colons".encode()).decode()
        path.write_text(json.dumps({"auths": {key: {"auth": secret}}}))
        return path

    podman = auth_file("auth.json", "127.0.0.1:5000", "alice")
    docker = auth_file("config.json", "https://index.docker.io/v1/", "bob")
    files = [tmp_path / "missing.json", podman, docker]
    assert find_credentials("127.0.0.1:5000", files) == ("alice", "pw:with:colons")
    assert find_credentials("docker.io", files) == ("bob", "pw:with:colons")
    assert find_credentials("quay.io", files) is None


def test_plain_http_only_for_loopback_or_listed() -> None:
    assert base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert base_url("127.9.9.9") == "http://127.9.9.9"
    assert base_url("localhost:5000") == "http://localhost:5000"
    assert base_url("[::1]:5000") == "http://[::1]:5000"
    assert base_url("10.0.0.5:5000") == "https://10.0.0.5:5000"
    assert base_url("10.0.0.5:5000", ["10.0.0.5:5000"]) == "http://10.0.0.5:5000"
    assert base_url("registry-1.docker.io") == "https://registry-1.docker.io"


def test_remote_registry_is_never_asked_over_plain_http(tmp_path: Path) -> None:
    fake = FakeRegistry()
    fake.add_image("t", [_layer({"f": b"x"})])
    _pull(fake, "10.0.0.5:5000/repo:t", tmp_path)
    assert fake.requests and all(r.url.scheme == "https" for r in fake.requests)
    with pytest.raises(UserError, match="scheme"):
        _pull(fake, "http://10.0.0.5:5000/repo:t", tmp_path / "again")
    assert len(fake.requests) == 3  # the refused pull sent nothing
    _pull(fake, "10.0.0.5:5000/repo:t", tmp_path / "listed", insecure_registries=["10.0.0.5:5000"])
    assert fake.requests[-1].url.scheme == "http"


def test_bearer_token_flow_and_pull(tmp_path: Path) -> None:
    fake = FakeRegistry(token=True)
    fake.add_image("t", [_layer({"etc/a": b"1"}), _layer({"etc/b": b"2"})])
    image = _pull(fake, "127.0.0.1:5000/team/app:t", tmp_path)
    assert (tmp_path / "tree/etc/a").read_bytes() == b"1"
    assert (tmp_path / "tree/etc/b").read_bytes() == b"2"
    assert image.cmd == ("/bin/sh",) and len(image.layers) == 2
    token_requests = [r for r in fake.requests if r.url.host == "auth.example"]
    assert len(token_requests) == 1
    assert token_requests[0].url.params["scope"] == "repository:team/app:pull"
    assert token_requests[0].url.params["service"] == "reg"


def test_cached_blobs_are_not_fetched_again(tmp_path: Path) -> None:
    fake = FakeRegistry()
    fake.add_image("t", [_layer({"a": b"1"})])
    _pull(fake, "127.0.0.1:5000/x:t", tmp_path)
    before = len([r for r in fake.requests if "/blobs/" in r.url.path])
    asyncio.run(
        pull_oci(
            "127.0.0.1:5000/x:t",
            cache_dir=tmp_path / "cache",
            dest_tree=tmp_path / "tree2",
            progress=lambda _m: None,
            transport=fake.transport(),
        )
    )
    after = len([r for r in fake.requests if "/blobs/" in r.url.path])
    assert before == 2 and after == 2


def test_oversized_manifest_refused(tmp_path: Path) -> None:
    fake = FakeRegistry()
    fake.manifests["big"] = (
        "application/vnd.oci.image.manifest.v1+json",
        b" " * (MAX_MANIFEST_BYTES + 1),
    )
    with pytest.raises(UserError, match="larger than 4 MiB"):
        _pull(fake, "127.0.0.1:5000/x:big", tmp_path)


def test_missing_image_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="not found"):
        _pull(FakeRegistry(), "127.0.0.1:5000/x:nope", tmp_path)


def test_wrong_digest_from_registry_fails_and_caches_nothing(tmp_path: Path) -> None:
    fake = FakeRegistry()
    fake.add_image("t", [_layer({"a": b"1"})])
    layer_digest = next(d for d in fake.blobs if fake.blobs[d][:2] == b"\x1f\x8b")
    fake.blobs[layer_digest] = _layer({"a": b"evil"})[: len(fake.blobs[layer_digest])]
    with pytest.raises(UserError) as err:
        _pull(fake, "127.0.0.1:5000/x:t", tmp_path)
    assert layer_digest in err.value.message
    blob_dir = tmp_path / "cache/blobs/sha256"
    assert layer_digest.split(":")[1] not in [p.name for p in blob_dir.iterdir()]
    assert not [p for p in blob_dir.iterdir() if p.name.startswith(".tmp-")]


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        (b"hello worle", "hashes to"),
        (b"hello world!", "larger than"),
        (b"hello", "truncated"),
    ],
)
def test_blob_verification(tmp_path: Path, sent: bytes, why: str) -> None:
    cache = BlobCache(tmp_path)
    good = b"hello world"
    with pytest.raises(UserError, match=why):
        asyncio.run(cache.store(_digest(good), len(good), _chunks(sent[:4], sent[4:])))
    assert not cache.has(_digest(good), len(good))
    assert list(cache.blob_dir.iterdir()) == []
    seen: list[tuple[int, int]] = []
    path = asyncio.run(
        cache.store(
            _digest(good), len(good), _chunks(good[:4], good[4:]), lambda d, t: seen.append((d, t))
        )
    )
    assert path.read_bytes() == good and seen == [(4, 11), (11, 11)]


def test_cache_rejects_digests_that_are_not_sha256_hex(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="malformed digest"):
        BlobCache(tmp_path).path("sha256:../../etc/passwd")


def test_cache_prune(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert cache_prune(cache, dry_run=False) == (0, 0)
    blobs = cache / "blobs/sha256"
    blobs.mkdir(parents=True)
    (blobs / ("a" * 64)).write_bytes(b"x" * 100)
    (blobs / ("b" * 64)).write_bytes(b"x" * 50)
    assert cache_prune(cache, dry_run=True) == (150, 2)
    assert cache.exists()
    assert cache_prune(cache, dry_run=False) == (150, 2)
    assert not cache.exists() and list(tmp_path.iterdir()) == []
    assert (
        prune_message(150, 2, cache, dry_run=True)
        == f"would free 150 B across 2 blob(s) in {cache}"
    )


def test_client_sends_basic_credentials_only_when_challenged(tmp_path: Path) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        if request.headers.get("authorization") is None:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return httpx.Response(404)

    async def go() -> None:
        ref = parse_reference("127.0.0.1:5000/x:t")
        async with RegistryClient(
            ref, transport=httpx.MockTransport(handler), credentials=("u", "p")
        ) as client:
            with pytest.raises(NotFound):
                await client.manifest("t")

    asyncio.run(go())
    assert seen == [None, "Basic " + base64.b64encode(b"u:p").decode()]


def test_token_service_gets_credentials_from_the_auth_file(tmp_path: Path, monkeypatch) -> None:
    auth = tmp_path / "auth.json"
    secret = base64.b64encode(b"alice:s3cret").decode()
    auth.write_text(json.dumps({"auths": {"10.0.0.5:5000": {"auth": secret}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    fake = FakeRegistry(token=True)
    fake.add_image("t", [_layer({"a": b"1"})])
    _pull(fake, "10.0.0.5:5000/x:t", tmp_path)
    token = next(r for r in fake.requests if r.url.host == "auth.example")
    assert token.headers["authorization"] == "Basic " + secret
    registry_calls = [r for r in fake.requests if r.url.host == "10.0.0.5"]
    assert all(r.headers.get("authorization") in (None, "Bearer tok") for r in registry_calls)
