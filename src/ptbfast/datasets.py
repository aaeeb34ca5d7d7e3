"""Locate, and optionally download, the Penn Treebank data, like ``keras.datasets``.

:func:`ptb` returns a directory holding ``ptb.train.txt``, ``ptb.valid.txt`` and
``ptb.test.txt``, looked for in this order:

1. the ``data_path`` argument;
2. the ``PTBFAST_DATA`` environment variable;
3. the cache directory (``cache_dir`` argument, else ``$PTBFAST_CACHE``, else
   ``~/.cache/ptbfast/ptb``) if it holds all three files;
4. with ``download=True``, Mikolov's ``simple-examples.tgz`` (the archive TF's tutorial uses) is
   fetched and its three PTB files are checked against known MD5 sums and put in the cache.

Only the standard library is used (``urllib``, ``tarfile``, ``hashlib``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Optional

try:  # (a CPython built without liblzma has no lzma module: its archives cannot be opened either)
    from lzma import LZMAError
except ImportError:
    class LZMAError(Exception):
        pass

from .reader import DataError, PathLike, data_files

PTB_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"

PTB_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")

PTB_MD5 = {
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
    "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
}

# Where the files sit inside simple-examples.tgz.
ARCHIVE_DIR = "simple-examples/data"

# PTB's largest file is about 5 MB; refuse members far bigger than that rather than fill the disk
# with a corrupt or hostile archive before the checksum could catch it.
_MAX_MEMBER_BYTES = 64 << 20

_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$PTBFAST_CACHE`` if set, else ``~/.cache/ptbfast/ptb``."""
    env = os.environ.get("PTBFAST_CACHE")
    if env:
        return Path(env).expanduser()
    try:
        home = Path.home()
    except RuntimeError:  # (no HOME and no passwd entry: a container run under an arbitrary uid)
        raise DataError("no home directory for the PTB cache (~/.cache/ptbfast/ptb): pass --data-path DIR "
                        "(PTBFAST_DATA=DIR) where the data are, or --cache-dir DIR (PTBFAST_CACHE=DIR) to "
                        "download them into") from None
    return home / ".cache" / "ptbfast" / "ptb"


def has_ptb_files(directory: Path) -> bool:
    return all((directory / name).is_file() for name in PTB_FILES)


def verify_ptb_files(directory: PathLike, md5: Optional[dict[str, str]] = None) -> Path:
    """``directory``, once each of its ``PTB_FILES`` matches its MD5 sum (``md5``, default
    ``PTB_MD5``); a DataError names the first file that does not."""
    directory, expected = Path(directory).expanduser(), PTB_MD5 if md5 is None else md5
    for name in PTB_FILES:
        try:
            digest = _md5(directory / name)
        except OSError as e:
            raise DataError(f"cannot read {directory / name}: {e.strerror or e}") from None
        if digest != expected[name].lower():
            raise DataError(f"{directory / name} has md5 {digest}, not {expected[name]}: it is damaged or not "
                            f"Mikolov's PTB; delete the ptb.*.txt files in {directory} and download again")
    return directory


def _how_to_get_data(cache: Path, url: str) -> str:
    return (
        "PTB data not found. Get it in one of these ways:\n"
        "  * pass --data-path DIR (or ptbfast.datasets.ptb(data_path=DIR)), where DIR holds "
        f"{', '.join(PTB_FILES)};\n"
        "  * set the environment variable PTBFAST_DATA=DIR;\n"
        f"  * download it into the cache {cache} with `python -m ptbfast download` or "
        "ptbfast.datasets.ptb(download=True).\n"
        f"By hand: fetch {url} and copy the three files from its {ARCHIVE_DIR}/ folder into DIR."
    )


def ptb(
    data_path: Optional[PathLike] = None,
    download: bool = False,
    cache_dir: Optional[PathLike] = None,
    *,
    url: str = PTB_URL,
    md5: Optional[dict[str, str]] = None,
    timeout: float = 60.0,
) -> Path:
    """Return a directory holding the PTB train, valid and test files.

    Args:
      data_path: directory to use. It, or ``$PTBFAST_DATA``, may also be any directory that
        :func:`ptbfast.reader.data_files` accepts (e.g. WikiText-style ``train.txt`` ...).
      download: fetch the data into the cache if it is not found elsewhere.
      cache_dir: cache directory; defaults to :func:`default_cache_dir`.
      url: where to download ``simple-examples.tgz`` from.
      md5: expected MD5 hex digest of each of ``PTB_FILES``; defaults to ``PTB_MD5``.
      timeout: seconds to wait on the network before giving up.

    Raises:
      DataError: the given directory lacks data files, the download or its check failed, or no
        data was found; the message says how to get the data.
    """
    if data_path is not None:
        return _checked_dir(Path(data_path).expanduser())
    env = os.environ.get("PTBFAST_DATA")
    if env:
        try:
            return _checked_dir(Path(env).expanduser())
        except DataError as e:
            raise DataError(f"PTBFAST_DATA: {e}") from None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if has_ptb_files(cache):
        return cache
    if download:
        download_ptb(cache, url=url, md5=md5, timeout=timeout)
        return cache
    raise DataError(_how_to_get_data(cache, url))


def _checked_dir(directory: Path) -> Path:
    data_files(directory)  # raises DataError naming the missing directory or file
    return directory


def download_ptb(
    cache_dir: PathLike,
    *,
    url: str = PTB_URL,
    md5: Optional[dict[str, str]] = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``simple-examples.tgz`` and install its three PTB files in ``cache_dir``.

    Only ``simple-examples/data/ptb.{train,valid,test}.txt`` are extracted, and only if they are
    regular files; every other member is ignored, so paths like ``../x`` can never be written.
    All three files are checked against their MD5 sums before any of them is moved into place
    (each with ``os.replace``), so a failed download or check leaves no new files behind.
    """
    expected = PTB_MD5 if md5 is None else md5
    missing = [name for name in PTB_FILES if name not in expected]
    if missing:
        raise ValueError(f"md5 must give a checksum for each of {PTB_FILES}, missing {missing}")
    cache = Path(cache_dir).expanduser()
    if cache.exists() and not cache.is_dir():
        raise DataError(f"cache directory {cache} is a file: name a directory (made if it does not exist)")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create cache directory {cache}: {e.strerror or e}") from None

    temps: list[Path] = []  # removed in `finally`; the installed files are no longer in it
    try:
        archive = _temp_path(cache, ".simple-examples.", ".tgz.part")
        temps.append(archive)
        _fetch(url, archive, timeout)

        extracted = _extract_ptb_files(archive, url, cache, temps)
        for name in PTB_FILES:
            digest = _md5(extracted[name])
            if digest != expected[name].lower():
                raise DataError(
                    f"checksum mismatch for {name} from {url}: md5 {digest}, expected "
                    f"{expected[name]}; the download is corrupt or not the PTB archive"
                )
        for name in PTB_FILES:
            os.replace(extracted[name], cache / name)
            temps.remove(extracted[name])
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return cache


def _temp_path(directory: Path, prefix: str, suffix: str) -> Path:
    # In the cache directory itself, so that os.replace is a rename on one file system.
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(fd)
    return Path(name)


def _fetch(url: str, dest: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:  # (HTTPException: a
        # server that does not speak HTTP, a response cut short)
        # HTTPError reads best as itself ("HTTP Error 404: Not Found"), URLError by its reason.
        is_plain_urlerror = isinstance(e, urllib.error.URLError) and not isinstance(
            e, urllib.error.HTTPError
        )
        reason = e.reason if is_plain_urlerror else e
        if isinstance(e, urllib.error.HTTPError):
            e.close()  # it holds the open connection
        raise DataError(
            f"downloading {url} failed: {reason}. Fetch it by hand and pass its "
            f"{ARCHIVE_DIR}/ folder with --data-path DIR or PTBFAST_DATA=DIR"
        ) from None


def _extract_ptb_files(archive: Path, url: str, cache: Path, temps: list[Path]) -> dict[str, Path]:
    """Copy the three wanted members of ``archive`` to temp files in ``cache``; never extractall."""
    wanted = {f"{ARCHIVE_DIR}/{name}": name for name in PTB_FILES}
    extracted: dict[str, Path] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if name not in wanted:
                    continue  # anything else, "../evil" and absolute names included, is skipped
                target = wanted[name]
                if not member.isreg():
                    raise DataError(
                        f"{url}: archive member {member.name} is not a regular file "
                        "(link or special file); refusing it"
                    )
                if target in extracted:
                    raise DataError(f"{url}: archive member {member.name} appears twice")
                if member.size > _MAX_MEMBER_BYTES:
                    raise DataError(
                        f"{url}: archive member {member.name} is {member.size} bytes, "
                        f"too big for a PTB file"
                    )
                temp = _temp_path(cache, f".{target}.", ".part")
                temps.append(temp)
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has contents
                with source, open(temp, "wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
                extracted[target] = temp
    except (tarfile.TarError, EOFError, OSError, zlib.error, LZMAError) as e:  # (zlib: a corrupt gzip stream)
        raise DataError(f"{url}: not a readable .tgz archive: {e}") from None
    missing = [name for name in wanted if wanted[name] not in extracted]
    if missing:
        raise DataError(f"{url}: archive lacks {', '.join(missing)}")
    return extracted


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # a checksum, not security
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
