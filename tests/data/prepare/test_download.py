"""`erase-jax data prepare --download` against local `file://` URLs (`--mirror`): the tests
never touch the network.

Checked, through the command line: a good download is verified, renamed into --raw and
prepared exactly as the same files placed by hand; a wrong checksum, a truncated file and a
missing checksum are one-line errors that leave no file in --raw and no output folder; a rerun
reuses the verified file without fetching it (the mirror is gone), and refuses a cached file that
changed; MovieLens' zip is unpacked (top folder stripped), and a zip member pointing outside the
folder is refused. The SHA-256 is checked against hashlib on the bytes, independently.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from erase_jax import cli
from erase_jax.data.prepare import PREPARERS, build_preparer
from erase_jax.data.prepare.download import copy_hashed, read_checksums
from tests.data.prepare.raw_files import random_grocery, random_movielens

GROCERY = "amazon_reviews_grocery_and_gourmet_food"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sums(path, folder, names=None):
    names = names or sorted(p.name for p in folder.iterdir())
    path.write_text("# sha256sum output\n" + "".join(f"{sha256(folder / n)}  {n}\n" for n in names))
    return path


def prepare(tmp_path, raw, out, mirror, sums, *extra):
    return cli.main(["data", "prepare", GROCERY, "--raw", str(raw), "--out", str(out), "--download", "--quiet",
                     "--mirror", mirror.as_uri(), "--checksums", str(sums), *extra])


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "stats.json"}


def test_download_verifies_renames_and_prepares_like_local_files(tmp_path, capsys):
    mirror = random_grocery(tmp_path / "mirror")
    sums = write_sums(tmp_path / "SHA256SUMS", mirror)
    raw, out = tmp_path / "raw", tmp_path / "a" / GROCERY
    assert prepare(tmp_path, raw, out, mirror, sums) == 0
    assert leftovers(raw) == leftovers(mirror)  # no .partial file left
    for name in leftovers(mirror):
        assert (raw / name).read_bytes() == (mirror / name).read_bytes()
    by_hand = tmp_path / "b" / GROCERY
    assert cli.main(["data", "prepare", GROCERY, "--raw", str(mirror), "--out", str(by_hand), "--quiet"]) == 0
    assert folder_bytes(out) == folder_bytes(by_hand)

    for name in leftovers(mirror):  # the rerun needs no source: the verified files are reused
        (mirror / name).unlink()
    assert prepare(tmp_path, raw, out, mirror, sums, "--overwrite") == 0
    assert folder_bytes(out) == folder_bytes(by_hand)

    reviews = raw / "Grocery_and_Gourmet_Food.jsonl.gz"
    reviews.write_bytes(reviews.read_bytes()[:-10])  # a cached file that changed is refused, not replaced
    capsys.readouterr()
    assert prepare(tmp_path, raw, out, mirror, sums, "--overwrite") == 2
    assert "already there but its SHA-256" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["wrong checksum", "truncated file"])
def test_bad_download_is_an_error_and_keeps_nothing(tmp_path, capsys, damage):
    mirror = random_grocery(tmp_path / "mirror")
    sums = write_sums(tmp_path / "SHA256SUMS", mirror)
    reviews = mirror / "Grocery_and_Gourmet_Food.jsonl.gz"
    if damage == "wrong checksum":
        sums.write_text(sums.read_text().replace(sha256(reviews), "0" * 64))
    else:
        reviews.write_bytes(reviews.read_bytes()[: reviews.stat().st_size // 2])
    raw, out = tmp_path / "raw", tmp_path / "out" / GROCERY
    assert prepare(tmp_path, raw, out, mirror, sums) == 2
    error = capsys.readouterr().err
    assert error.startswith("erase-jax: error: ") and "Traceback" not in error
    assert "Grocery_and_Gourmet_Food.jsonl.gz: SHA-256" in error and "nothing was kept" in error
    assert "Grocery_and_Gourmet_Food.jsonl.gz" not in leftovers(raw)
    assert not any(name.endswith(".partial") for name in leftovers(raw))
    assert not out.parent.exists() or leftovers(out.parent) == []


def test_short_stream_against_content_length_is_a_truncated_download():
    data = b"x" * 1000
    digest, size = copy_hashed(io.BytesIO(data), io.BytesIO(), 1000, "file:///f")
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), 1000)
    with pytest.raises(ValueError, match="truncated download, 600 of 1,000 bytes"):
        copy_hashed(io.BytesIO(data[:600]), io.BytesIO(), 1000, "file:///f")


def test_missing_checksum_names_file_and_url_before_any_download(tmp_path, capsys):
    raw = tmp_path / "raw"
    assert cli.main(["data", "prepare", GROCERY, "--raw", str(raw), "--download", "--quiet",
                     "--out", str(tmp_path / "out" / GROCERY)]) == 2
    error = capsys.readouterr().err
    assert "no SHA-256 checksum for Grocery_and_Gourmet_Food.jsonl.gz (https://" in error and "--checksums" in error
    assert leftovers(raw) == []


def test_data_set_without_url_says_where_to_get_it(tmp_path, capsys):
    assert cli.main(["data", "prepare", "tafeng", "--raw", str(tmp_path), "--download", "--quiet"]) == 2
    assert "tafeng has no public download URL" in capsys.readouterr().err


def test_url_tables():
    """Every URL is https and names the file it is stored as; the Amazon tables follow the stem."""
    with_urls = {cls.name: cls.downloads for cls in PREPARERS.classes() if getattr(cls, "downloads", None)}
    assert set(with_urls) == {GROCERY, "amazon_reviews_books", "goodreads", "movielens"}
    for table in with_urls.values():
        for name, url in table.items():
            assert url.startswith("https://") and url.endswith("/" + name)
    assert set(build_preparer("amazon_reviews_books").downloads) == {"Books.jsonl.gz", "meta_Books.jsonl.gz"}


def test_checksum_file_format(tmp_path):
    good = tmp_path / "sums"
    good.write_text(f"{'A' * 64} *ml-20m.zip\n\n# comment\n{'b' * 64}  dir/books.json.gz\n")
    assert read_checksums(good) == {"ml-20m.zip": "a" * 64, "books.json.gz": "b" * 64}
    good.write_text("abc  file.csv\n")
    with pytest.raises(ValueError, match="sums, line 1: expected '<64 hex digits>  <file name>'"):
        read_checksums(good)


def zip_folder(folder, archive, top="ml-20m", extra=None):
    with zipfile.ZipFile(archive, "w") as opened:
        for path in sorted(folder.iterdir()):
            opened.write(path, f"{top}/{path.name}")
        if extra:
            opened.writestr(extra, "bad")
    return archive


def test_movielens_zip_is_unpacked_and_prepared(tmp_path):
    files = random_movielens(tmp_path / "files")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    zip_folder(files, mirror / "ml-20m.zip")
    sums = write_sums(tmp_path / "sums", mirror)
    raw, out = tmp_path / "raw", tmp_path / "a" / "movielens"
    command = ["data", "prepare", "movielens", "--raw", str(raw), "--out", str(out), "--download", "--quiet",
               "--mirror", mirror.as_uri(), "--checksums", str(sums)]
    assert cli.main(command) == 0
    assert leftovers(raw) == [".ml-20m.zip.unpacked", "ml-20m.zip", "movies.csv", "ratings.csv"]
    by_hand = tmp_path / "b" / "movielens"
    assert cli.main(["data", "prepare", "movielens", "--raw", str(files), "--out", str(by_hand), "--quiet"]) == 0
    assert folder_bytes(out) == folder_bytes(by_hand)


def test_zip_member_outside_the_folder_is_refused(tmp_path, capsys):
    files = random_movielens(tmp_path / "files")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    zip_folder(files, mirror / "ml-20m.zip", extra="ml-20m/../../evil.txt")
    sums = write_sums(tmp_path / "sums", mirror)
    raw = tmp_path / "raw"
    assert cli.main(["data", "prepare", "movielens", "--raw", str(raw), "--download", "--quiet",
                     "--out", str(tmp_path / "out" / "movielens"), "--mirror", mirror.as_uri(),
                     "--checksums", str(sums)]) == 2
    assert "points outside the folder" in capsys.readouterr().err
    assert not (tmp_path / "evil.txt").exists() and leftovers(raw) == ["ml-20m.zip"]
