"""Which Debian mirror to build images from.

banger never names a mirror itself: it uses the ``debian_mirror`` setting, or
else the Debian archive the host's apt already trusts. apt reads
``sources.list`` first, then ``sources.list.d/*.list`` (one-line format) and
``sources.list.d/*.sources`` (deb822) in name order; so do we.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from banger.errors import HostError

log = logging.getLogger("banger.image")

# Suites of the Debian archive proper. Third-party repositories reuse the word
# "bookworm" inside their own suite names (cloud-sdk-bookworm), so suites are
# matched whole, after dropping the -updates/-backports tail.
_DEBIAN_SUITES = frozenset(
    {
        "buster",
        "bullseye",
        "bookworm",
        "trixie",
        "forky",
        "sid",
        "oldoldstable",
        "oldstable",
        "stable",
        "testing",
        "unstable",
    }
)
_SUITE_TAILS = ("-updates", "-backports", "-proposed-updates")
_SCHEMES = ("http", "https", "ftp", "file")
_ONE_LINE = re.compile(r"^(?P<type>deb|deb-src)\s+(?:\[[^\]]*\]\s*)?(?P<uri>\S+)\s+(?P<rest>.*)$")


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` line, or one URI of a deb822 stanza."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    origin: Path


def debian_mirror(settings_value: str = "", sources_root: Path = Path("/etc/apt")) -> str:
    """Return the mirror to debootstrap from: the setting, else the host's Debian archive."""
    if settings_value.strip():
        return settings_value.strip()
    for source in apt_sources(sources_root):
        if is_debian_archive(source):
            mirror = source.uri.rstrip("/")
            log.debug("Debian mirror %s (from %s)", mirror, source.origin)
            return mirror
    raise HostError(
        f"no Debian archive found in the apt sources under {sources_root}",
        hint="set debian_mirror in banger's config file, or BANGER_DEBIAN_MIRROR,"
        " to a Debian mirror URL (the one ending in /debian)",
    )


def is_debian_archive(source: AptSource) -> bool:
    """True for the Debian archive proper: not security, not debug, not a third party."""
    if urlsplit(source.uri).scheme not in _SCHEMES:
        return False
    segments = [s for s in urlsplit(source.uri).path.split("/") if s]
    if any(s.startswith("debian-") for s in segments):
        return False  # debian-security, debian-debug, debian-ports, ...
    if any(s.endswith(("-security", "-debug")) for s in source.suites):
        return False
    # Every Debian archive has "main"; Docker's .../linux/debian repo has only "stable".
    if "main" not in source.components:
        return False
    return "debian" in segments or any(_base_suite(s) in _DEBIAN_SUITES for s in source.suites)


def _base_suite(suite: str) -> str:
    for tail in _SUITE_TAILS:
        if suite.endswith(tail):
            return suite[: -len(tail)]
    return suite


def apt_sources(root: Path) -> Iterator[AptSource]:
    """Every enabled binary (``deb``) source under ``root``, in apt's reading order."""
    main = root / "sources.list"
    if main.is_file():
        yield from parse_one_line(_read(main), main)
    parts = root / "sources.list.d"
    if not parts.is_dir():
        return
    for path in sorted(parts.iterdir()):
        if not path.is_file():
            continue
        if path.suffix == ".list":
            yield from parse_one_line(_read(path), path)
        elif path.suffix == ".sources":
            yield from parse_deb822(_read(path), path)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        log.debug("cannot read %s: %s", path, exc)
        return ""


def parse_one_line(text: str, origin: Path = Path("sources.list")) -> Iterator[AptSource]:
    """Parse the classic ``deb [options] URI SUITE COMPONENT...`` format."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = _ONE_LINE.match(line)
        if not match or match["type"] != "deb":
            continue
        words = match["rest"].split()
        if not words:
            continue
        yield AptSource(match["uri"], (words[0],), tuple(words[1:]), origin)


def parse_deb822(text: str, origin: Path = Path("debian.sources")) -> Iterator[AptSource]:
    """Parse deb822 stanzas (``Types:``, ``URIs:``, ``Suites:``, ``Components:``)."""
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        suites = tuple(stanza.get("suites", "").split())
        components = tuple(stanza.get("components", "").split())
        for uri in stanza.get("uris", "").split():
            yield AptSource(uri, suites, components, origin)


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, key = {}, ""
            continue
        if raw[0] in " \t" and key:
            fields[key] += " " + raw.strip()  # a continuation line
            continue
        name, sep, value = raw.partition(":")
        if sep:
            key = name.strip().lower()
            fields[key] = value.strip()
    if fields:
        yield fields
