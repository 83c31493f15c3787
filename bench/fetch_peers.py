"""The peer IRC servers, each unpacked side by side from Debian's packages: ``python3 -m bench.fetch_peers``.

Debian's IRC server packages conflict with each other (installing one
removes the other), so none is installed: each is fetched with ``apt-get
download`` and unpacked with ``dpkg -x`` into its own directory under
:data:`CACHE` (``bench/.peers/``, git-ignored), together with the shared
libraries the machine lacks (found with ``ldd``).  :mod:`bench.run` calls
:func:`ensure` for the peers it is asked for; a peer that cannot be fetched
(no network, no ``apt-get``) is skipped with a notice.

- ``inspircd`` (InspIRCd 3): ``usr/sbin/inspircd``; its modules' directory is
  set in the generated configuration (``<path moduledir=...>``).
- ``ircd-hybrid`` (8.x) needs ``libltdl7``.  It looks for its modules only
  under compiled-in absolute paths (``/usr/lib/ircd-hybrid/modules/`` and
  ``.../autoload/``) after a ``chdir("/usr")``, and has no option to say
  otherwise, so :func:`ensure` writes a copy of the binary in which those
  three strings are replaced by ``modules/``, ``modules/autoload/`` and
  ``.``: the server then stays in its working directory, where
  :func:`bench.peers.start_hybrid` links ``modules`` to the unpacked ones.
  Its resolver's ``/etc/resolv.conf`` becomes ``resolv.conf`` there too, so
  that its address lookups (which it cannot switch off) go to
  :mod:`bench.dns_stub`.  Nothing else in the binary changes.
- ``ngircd`` needs ``libident``; used when ngIRCd is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.servers import ROOT

CACHE = Path(os.environ.get("BENCH_PEERS_DIR", ROOT / "bench" / ".peers"))
"""Where the peers are unpacked (``BENCH_PEERS_DIR`` overrides it)."""

PACKAGES: dict[str, list[str]] = {
    "inspircd": ["inspircd"],
    "ircd-hybrid": ["ircd-hybrid", "libltdl7"],
    "ngircd": ["ngircd", "libident"],
}
"""For each peer: its package, then the libraries it needs that a bare machine lacks."""

BINARIES = {
    "inspircd": "usr/sbin/inspircd",
    "ircd-hybrid": "usr/sbin/ircd-hybrid",
    "ngircd": "usr/sbin/ngircd",
}
LIBRARY_DIR = "usr/lib/x86_64-linux-gnu"
HYBRID_PATCHED = "ircd-hybrid-bench"
"""The copy of ircd-hybrid whose module paths are relative to its working directory."""
HYBRID_PATHS = (
    (b"/usr/lib/ircd-hybrid/modules/", b"modules/"),
    (b"/usr/lib/ircd-hybrid/modules//autoload/", b"modules/autoload/"),
    (b"/usr", b"."),
    (b"/etc/resolv.conf", b"resolv.conf"),
)


@dataclass
class Unpacked:
    """One peer, unpacked: where it is and how to run it."""

    name: str
    root: Path
    binary: Path
    versions: dict[str, str]

    @property
    def library_path(self) -> str:
        """``LD_LIBRARY_PATH`` for the libraries unpacked beside it."""
        return str(self.root / LIBRARY_DIR)

    def env(self) -> dict[str, str]:
        paths = [self.library_path, os.environ.get("LD_LIBRARY_PATH", "")]
        return dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(p for p in paths if p))

    def missing_libraries(self) -> list[str]:
        """What ``ldd`` cannot find for the binary, with the unpacked libraries on the path."""
        try:
            out = subprocess.run(["ldd", str(self.binary)], capture_output=True, text=True, timeout=30,
                                 env=self.env()).stdout
        except (OSError, subprocess.SubprocessError) as e:
            return [f"ldd failed: {e}"]
        return [line.split()[0] for line in out.splitlines() if "not found" in line]


def unpacked(name: str, cache: Path = CACHE) -> Unpacked | None:
    """The peer ``name`` if it has been unpacked into ``cache``, else ``None``."""
    root = cache / name
    stamp = root / "versions.json"
    binary = root / (HYBRID_PATCHED if name == "ircd-hybrid" else BINARIES[name])
    if not stamp.exists() or not binary.exists():
        return None
    return Unpacked(name, root, binary, json.loads(stamp.read_text(encoding="utf-8")))


def patch_strings(data: bytes, replacements: tuple[tuple[bytes, bytes], ...]) -> bytes:
    """``data`` with each NUL-terminated string ``old`` (found exactly once) replaced by ``new``, NUL-padded.

    :raises ValueError: a string is missing, not unique, or ``new`` is longer than ``old``.
    """
    out = bytearray(data)
    for old, new in replacements:
        needle = b"\0" + old + b"\0"
        at = out.find(needle)
        if at < 0 or out.find(needle, at + 1) >= 0 or len(new) > len(old):
            raise ValueError(f"cannot replace {old!r} in the binary")
        out[at + 1 : at + 2 + len(old)] = new + b"\0" * (len(old) + 1 - len(new))
    return bytes(out)


def fetch(name: str, cache: Path = CACHE) -> Unpacked:
    """Download ``name``'s packages with ``apt-get download`` and unpack them with ``dpkg -x``.

    :raises RuntimeError: when a package cannot be downloaded or unpacked.
    """
    root = cache / name
    root.mkdir(parents=True, exist_ok=True)
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as download:
        for package in PACKAGES[name]:
            got = subprocess.run(["apt-get", "download", package], cwd=download, capture_output=True,
                                 text=True, timeout=300)
            debs = sorted(Path(download).glob(f"{package}_*.deb"))
            if got.returncode != 0 or not debs:
                raise RuntimeError(f"apt-get download {package} failed: {got.stderr.strip()[-500:]}")
            subprocess.run(["dpkg", "-x", str(debs[0]), str(root)], check=True, timeout=300)
            versions[package] = subprocess.run(
                ["dpkg-deb", "-f", str(debs[0]), "Version"], capture_output=True, text=True, timeout=60
            ).stdout.strip()
    if name == "ircd-hybrid":
        original = root / BINARIES[name]
        patched = root / HYBRID_PATCHED
        patched.write_bytes(patch_strings(original.read_bytes(), HYBRID_PATHS))
        patched.chmod(0o755)
    # Readable by everyone: ircd-hybrid refuses to run as root, and runs as nobody.
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    (root / "versions.json").write_text(json.dumps(versions) + "\n", encoding="utf-8")
    peer = unpacked(name, cache)
    assert peer is not None
    return peer


def ensure(name: str, cache: Path = CACHE) -> tuple[Unpacked | None, str | None]:
    """The peer ``name``, fetched when not yet unpacked; or ``None`` and why not."""
    peer = unpacked(name, cache)
    if peer is None:
        try:
            peer = fetch(name, cache)
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            return None, f"{name}: could not fetch it ({e})"
    missing = peer.missing_libraries()
    if missing:
        return None, f"{name}: shared libraries not found: {', '.join(missing)}"
    return peer, None


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or list(PACKAGES)
    status = 0
    for name in names:
        peer, why = ensure(name)
        if peer is None:
            print(why)
            status = 1
        else:
            print(f"{name}: {peer.binary} ({', '.join(f'{p} {v}' for p, v in peer.versions.items())})")
    return status


if __name__ == "__main__":
    sys.exit(main())
