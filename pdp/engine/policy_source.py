"""Where the embedded engine's policy comes from: a directory, a bundle file, a bundle URL.

Owns reading the configured source into a PolicyBundle and noticing when it changed:
a directory by its files' names, sizes and mtimes; a bundle file by its size and mtime;
a bundle URL by polling with `If-None-Match` and the ETag of the last bundle the engine
activated (OPA's Bundle Service API: `304 Not Modified` means unchanged). A bundle is
verified (pdp.engine.opa_bundle) before it is handed over, so what reaches the engine is
whole and, when a key is configured, signed. It does not load anything into an engine:
pdp.engine.embedded swaps the policy, and calls `accept()` once it is in force.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Protocol

import aiohttp

from pdp.engine import opa_bundle
from pdp.engine.bundle import BundleError, PolicyBundle, fingerprint, load_bundle
from pdp.plumbing.downloads import read_capped
from portcullis.config import EngineSettings

DIRECTORY_POLL_SECONDS = 1.0
FETCH_TIMEOUT_SECONDS = 30.0


class PolicySource(Protocol):
    description: str
    poll_seconds: float

    async def load(self) -> PolicyBundle:
        """The policy now; raises BundleError when there is none to be had."""
        ...

    async def changed(self) -> PolicyBundle | None:
        """A new policy, None when unchanged; raises BundleError when the new one is bad."""
        ...

    def accept(self) -> None:
        """The engine put the bundle last returned in force."""
        ...

    async def close(self) -> None: ...


class DirectorySource:
    """A policy directory (rego/), read with its git revision."""

    def __init__(self, root: Path, poll_seconds: float = DIRECTORY_POLL_SECONDS) -> None:
        self.root = root
        self.description = str(root)
        self.poll_seconds = poll_seconds
        self._seen: tuple[tuple[str, int, int], ...] = ()

    async def load(self) -> PolicyBundle:
        self._seen = fingerprint(self.root)
        return load_bundle(self.root).without_tests()

    async def changed(self) -> PolicyBundle | None:
        try:
            current = fingerprint(self.root)
        except OSError:
            return None
        if current == self._seen:
            return None
        self._seen = current  # a broken change is reported once, not every poll
        return load_bundle(self.root).without_tests()

    def accept(self) -> None:
        pass

    async def close(self) -> None:
        pass


class BundleFileSource:
    """An OPA bundle on disk (what `portcullis policy build` writes)."""

    def __init__(
        self, path: Path, key: opa_bundle.VerificationKey | None, poll_seconds: float
    ) -> None:
        self.path = path
        self.key = key
        self.description = str(path)
        self.poll_seconds = poll_seconds
        self._seen: tuple[int, int] = (-1, -1)

    def _stat(self) -> tuple[int, int]:
        st = self.path.stat()
        return st.st_size, st.st_mtime_ns

    async def load(self) -> PolicyBundle:
        try:
            self._seen = self._stat()
            data = self.path.read_bytes()
        except OSError as exc:
            raise BundleError(f"{self.path}: {exc.strerror}") from None
        return await _read(data, self.key, str(self.path))

    async def changed(self) -> PolicyBundle | None:
        try:
            if self._stat() == self._seen:
                return None
        except OSError:
            return None  # being replaced: look again at the next poll
        return await self.load()

    def accept(self) -> None:
        pass

    async def close(self) -> None:
        pass


class BundleURLSource:
    """An OPA bundle served over HTTP(S), polled with the ETag of the bundle in force."""

    def __init__(
        self, url: str, key: opa_bundle.VerificationKey | None, poll_seconds: float
    ) -> None:
        self.url = url
        self.key = key
        self.description = url
        self.poll_seconds = poll_seconds
        self.etag = ""  # of the bundle in force (sent as If-None-Match)
        self._pending = ""  # of the bundle last handed to the engine
        # the last bundle tried, in force or refused: a server that keeps answering 200
        # with a bundle already refused is not re-verified and re-loaded every poll
        self._tried = ""
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
            )
        return self._session

    async def _fetch(self, etag: str) -> tuple[bytes, str] | None:
        headers = {"If-None-Match": etag} if etag else {}
        try:
            # no redirects: the policy comes from the URL configured, or not at all
            async with self._client().get(
                self.url, headers=headers, allow_redirects=False
            ) as response:
                if response.status == 304 and etag:
                    return None
                if response.status != 200:
                    raise BundleError(f"{self.url} answered HTTP {response.status}")
                length = response.content_length or 0
                if length > opa_bundle.MAX_BUNDLE_BYTES:
                    raise BundleError(f"{self.url}: bundle of {length} bytes is too large")
                body = await read_capped(response.content, opa_bundle.MAX_BUNDLE_BYTES)
                if len(body) > opa_bundle.MAX_BUNDLE_BYTES:
                    raise BundleError(f"{self.url}: bundle is too large")
                return body, response.headers.get("ETag", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BundleError(f"cannot fetch {self.url}: {type(exc).__name__}: {exc}") from None

    async def load(self) -> PolicyBundle:
        fetched = await self._fetch("")
        assert fetched is not None
        self._tried = ""
        bundle = await self._read(*fetched)
        assert bundle is not None
        return bundle

    async def changed(self) -> PolicyBundle | None:
        fetched = await self._fetch(self.etag)
        if fetched is None:
            return None
        return await self._read(*fetched)

    async def _read(self, body: bytes, etag: str) -> PolicyBundle | None:
        digest = hashlib.sha256(body).hexdigest()
        if digest == self._tried:
            return None
        self._tried = digest
        bundle = await _read(body, self.key, self.url)
        self._pending = etag
        return bundle

    def accept(self) -> None:
        self.etag = self._pending

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read(data: bytes, key: opa_bundle.VerificationKey | None, source: str) -> PolicyBundle:
    """Unpack, verify and read a bundle off the event loop: hashing the data of the
    shipped library takes tens of milliseconds that decisions must not wait behind."""
    return await asyncio.to_thread(opa_bundle.read, data, key, source)


def source_for(settings: EngineSettings) -> PolicySource:
    """The source the configuration names: pdp.engine.bundle (file or URL), else policies."""
    key = None
    if settings.verification is not None:
        v = settings.verification
        try:
            key = opa_bundle.VerificationKey.from_file(v.key_file, v.algorithm, v.key_id, v.scope)
        except OSError as exc:
            raise BundleError(f"verification key {v.key_file}: {exc.strerror}") from None
    bundle = settings.bundle
    if bundle.startswith(("http://", "https://")):
        return BundleURLSource(bundle, key, settings.poll_seconds)
    if bundle:
        return BundleFileSource(Path(bundle), key, min(settings.poll_seconds, 1.0))
    return DirectorySource(Path(settings.policies))
