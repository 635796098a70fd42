"""`erase-jax data prepare <name> --download`: a data set's raw files from their public URLs,
each verified against a SHA-256 checksum before it is used.

A preparer whose source has stable public URLs declares them:

    downloads: ClassVar[dict[str, str]]   file name in the --raw folder -> URL
    checksums: ClassVar[dict[str, str]]   (optional) file name -> SHA-256 recorded from the source

No checksum is recorded in this repository: none of the sources publishes a SHA-256 that the
specification records, and one computed here from a download could not be told apart from a
corrupt one. So the checksums come from the user (`--checksums FILE`, lines `<sha256>  <file
name>` as `sha256sum` writes them) and a file without a checksum is not downloaded (an error
that names the file and its URL). A checksum given by the user overrides a recorded one.

Each file goes to the --raw folder, the cache: it is written under a temporary name
(`.<name>.<random>.partial`), hashed as it arrives, and renamed to its name only when its size
matches the server's Content-Length and its SHA-256 the expected one. A failed, truncated or
mismatching download is a ValueError naming the file, the URL and both sizes or checksums, and
leaves no file behind. A file already in the folder is not downloaded again; it is re-hashed,
and one that does not match is an error (it is never overwritten). Zip archives (MovieLens) are
unpacked into the folder after verification, the archive's single top folder stripped, through
a temporary folder, and a marker `.<archive>.unpacked` records that it is done.

`--mirror URL` fetches every file from `URL/<file name>` instead (a local copy, an institutional
mirror, or `file:///...` in the tests, which never touch the network).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from erase_jax.data.prepare.streams import progress_bar

BLOCK = 1 << 20
TIMEOUT_S = 60


def fetch_raw_files(preparer, raw: str | Path, checksum_file: str | Path | None = None,
                    mirror: str | None = None, quiet: bool = False) -> list[Path]:
    """Makes sure every file of `preparer.downloads` is in `raw`, verified (module doc);
    returns their paths. ValueError for a preparer without URLs or a file without checksum."""
    downloads = getattr(preparer, "downloads", None)
    if not downloads:
        raise ValueError(f"{preparer.name} has no public download URL; download its raw files "
                         f"({preparer.raw_files}) by hand from {preparer.source}")
    expected = {**getattr(preparer, "checksums", {}), **read_checksums(checksum_file)}
    urls = {name: f"{mirror.rstrip('/')}/{name}" if mirror else url for name, url in downloads.items()}
    missing = [name for name in urls if name not in expected]
    if missing:
        listed = "; ".join(f"{name} ({urls[name]})" for name in missing)
        raise ValueError(f"no SHA-256 checksum for {listed}: pass --checksums FILE with a line "
                         "'<sha256>  <file name>' for each (docs/datasets.md, downloading)")
    raw = Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, url in urls.items():
        path = fetch(url, raw / name, expected[name], quiet)
        if name.endswith(".zip"):
            unpack(path)
        paths.append(path)
    return paths


def read_checksums(path: str | Path | None) -> dict[str, str]:
    """file name -> lower-case SHA-256 from a `sha256sum`-style file (`<hex>  <name>` or
    `<hex> *<name>`; blank lines and `#` comments skipped). ValueError naming a bad line."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checksum file {path} does not exist")
    checksums = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{path}, line {number}: expected '<64 hex digits>  <file name>', got {line!r}")
        checksums[Path(parts[1].strip().lstrip("*")).name] = digest
    return checksums


def fetch(url: str, target: Path, sha256: str, quiet: bool = False) -> Path:
    """`target`, downloaded from `url` unless already there; verified either way (module doc)."""
    sha256 = sha256.lower()
    if target.is_file():
        found = file_sha256(target)
        if found != sha256:
            raise ValueError(f"{target} is already there but its SHA-256 is {found}, not {sha256}; "
                             "move it away to download it again")
        return target
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".partial", delete=False)
    try:
        with handle:
            digest, size = _download(url, handle, target.name, quiet)
        if digest != sha256:
            raise ValueError(f"{url}: SHA-256 of the {size:,} bytes received is {digest}, not the expected "
                             f"{sha256} (a truncated or changed file); nothing was kept")
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return target


def _download(url: str, sink, label: str, quiet: bool) -> tuple[str, int]:
    """(SHA-256, bytes) of what `url` sent, written to `sink`; ValueError when the server's
    Content-Length is not met or the transfer fails."""
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ValueError(f"could not download {url}: {getattr(error, 'reason', error)}") from None
    with response:
        length = response.headers.get("Content-Length")
        try:
            return copy_hashed(response, sink, int(length) if length else None, url, label, quiet)
        except OSError as error:
            raise ValueError(f"download of {url} failed: {error}") from None


def copy_hashed(source, sink, length: int | None, url: str, label: str = "", quiet: bool = True) -> tuple[str, int]:
    """Copies the stream `source` to `sink`; (SHA-256 hex, bytes). A stream that ends before
    `length` bytes is a ValueError (a truncated download)."""
    digest, size = hashlib.sha256(), 0
    bar = progress_bar(length, label, quiet)
    try:
        while block := source.read(BLOCK):
            digest.update(block)
            sink.write(block)
            size += len(block)
            if bar is not None:
                bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    if length is not None and size != length:
        raise ValueError(f"{url}: truncated download, {size:,} of {length:,} bytes; nothing was kept")
    return digest.hexdigest(), size


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def unpack(archive: Path) -> None:
    """The members of a verified zip `archive` into its folder (module doc), once."""
    marker = archive.parent / f".{archive.name}.unpacked"
    if marker.is_file():
        return
    staging = Path(tempfile.mkdtemp(dir=archive.parent, prefix=f".{archive.name}.", suffix=".partial"))
    try:
        with zipfile.ZipFile(archive) as opened:
            members = [m for m in opened.infolist() if not m.is_dir()]
            for member in members:
                parts = Path(member.filename).parts
                if member.filename.startswith("/") or ".." in parts:
                    raise ValueError(f"{archive}: member {member.filename!r} points outside the folder")
            tops = {Path(m.filename).parts[0] for m in members}
            strip = 1 if len(tops) == 1 and all(len(Path(m.filename).parts) > 1 for m in members) else 0
            for member in members:
                relative = Path(*Path(member.filename).parts[strip:])
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                with opened.open(member) as source, open(staging / relative, "wb") as sink:
                    shutil.copyfileobj(source, sink, BLOCK)
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            destination = archive.parent / path.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)
        marker.write_text(f"{file_sha256(archive)}  {archive.name}\n", encoding="utf-8")
    except zipfile.BadZipFile as error:
        raise ValueError(f"{archive}: not a readable zip archive ({error})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
