"""The ``crossmodal`` entry point: common options and error reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossmodal_search.cli import main


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    argv = ["search", "--image", str(missing), "--embedder", "offline"]
    argv += ["--store", f"local:{tmp_path / 'store'}"]
    assert main(argv) == 1
    with pytest.raises(Exception, match=r"missing\.jpg"):
        main([*argv, "--debug"])
    with pytest.raises(Exception, match=r"missing\.jpg"):
        main(["--debug", *argv])


def test_unwritable_store_directory_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = main(["demo", "--embedder", "offline", "--dir", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("crossmodal: error:") and err.count("\n") == 1
    assert "Traceback" not in err


def test_s3vectors_store_without_a_region_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    code = main(["search", "red", "--embedder", "offline", "--store", "s3vectors://shop-b/idx"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and err.count("\n") == 1
    assert "no AWS region" in err and "--region" in err
