"""The command line's last line of defence: an out-of-memory failure is said plainly, without a
traceback, and any other unexpected error still raises (it is a bug to see)."""

import jax
import pytest

from erase_jax import cli


def test_out_of_memory_is_a_clear_message(monkeypatch, capsys):
    def exhausted(args):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 32763485696 bytes.")

    monkeypatch.setattr(cli, "cmd_report", exhausted)
    assert cli.main(["report", "somewhere", "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "erase-jax report: out of memory (RESOURCE_EXHAUSTED: Out of memory allocating 32763485696 bytes.)" in err
    assert "resumes" in err and "Traceback" not in err


def test_other_runtime_errors_still_raise(monkeypatch):
    def broken(args):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(cli, "cmd_report", broken)
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        cli.main(["report", "somewhere", "--quiet"])
