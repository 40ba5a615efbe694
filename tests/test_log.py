"""radiolab.log and the command line's logging: levels, scan ids, progress bars off a terminal."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from radiolab.cli import main
from radiolab.io import write_volume
from radiolab.log import pop_logging_options, scan_logger
from radiolab.synthetic import chest_phantom

TINY = dict(shape=(40, 64, 64), spacing=(7.0, 5.0, 5.0))


@pytest.mark.parametrize("argv, rest, level", [
    (["segment", "--in", "a"], ["segment", "--in", "a"], None),
    (["-v", "segment", "--in", "a"], ["segment", "--in", "a"], "INFO"),
    (["segment", "--in", "a", "--verbose"], ["segment", "--in", "a"], "INFO"),
    (["segment", "-vv"], ["segment"], "DEBUG"),
    (["segment", "-v", "-v"], ["segment"], "DEBUG"),
    (["segment", "--log-level", "error", "-v"], ["segment"], "ERROR"),
    (["segment", "--log-level=debug"], ["segment"], "DEBUG"),
    (["run", "p.yaml", "--", "-v"], ["run", "p.yaml", "--", "-v"], None),
])
def test_logging_options_are_taken_from_anywhere(argv, rest, level):
    assert pop_logging_options(argv) == (rest, level)


@pytest.mark.parametrize("argv", [["segment", "--log-level"], ["segment", "--log-level", "loud"]])
def test_bad_log_level_is_a_usage_error(argv, capsys):
    assert main(argv) == 2
    assert "--log-level needs one of DEBUG, INFO, WARNING, ERROR" in capsys.readouterr().err


def test_scan_logger_puts_the_scan_id_in_text_and_record(caplog):
    with caplog.at_level(logging.WARNING, logger="radiolab"):
        scan_logger("radiolab.segment.run", "case_007").warning("failed [%s]: %s", "lung_mask", "no lung")
    (record,) = caplog.records
    assert record.name == "radiolab.segment.run" and record.scan_id == "case_007"
    assert record.getMessage() == "case_007: failed [lung_mask]: no lung"


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """One phantom and one scan of soft tissue only (no lung)."""
    folder = tmp_path_factory.mktemp("scans")
    phantom = chest_phantom(TINY["shape"], TINY["spacing"], lesion_fraction=0.1, seed=6)
    write_volume(folder / "case_000.nrrd", phantom.volume, phantom.geometry)
    write_volume(folder / "nolung.nrrd", np.full(TINY["shape"], 40, np.int16), phantom.geometry)
    return folder


def _segment(scans, out, *options):
    return main(["segment", "--in", str(scans), "--out", str(out), "--model", "zaffino2021", *options])


def test_segment_warns_with_the_scan_id_and_logs_progress_with_v(scans, tmp_path, capsys):
    assert _segment(scans, tmp_path / "a", "--quiet") == 1
    err = capsys.readouterr().err
    assert f"radiolab segment: WARNING: nolung: failed [lung_mask]: {scans / 'nolung.nrrd'}: " in err
    assert "INFO" not in err

    assert _segment(scans, tmp_path / "b", "--quiet", "-v") == 1
    err = capsys.readouterr().err
    assert "radiolab segment: WARNING: nolung: failed [lung_mask]" in err
    assert "radiolab segment: INFO: case_000: labelled: lung " in err and " mL, LI " in err

    assert _segment(scans, tmp_path / "b", "--quiet", "-v") == 1  # resumed
    assert "radiolab segment: INFO: case_000: up to date: lung " in capsys.readouterr().err

    assert _segment(scans, tmp_path / "c", "--quiet", "--log-level", "ERROR") == 1
    assert "WARNING" not in capsys.readouterr().err
    # The command's set-up ends with it.
    assert not logging.getLogger("radiolab").handlers


def test_progress_bars_only_on_a_terminal(scans, tmp_path, capsys):
    # Without --quiet progress is asked for; stderr here is not a terminal, so no bar.
    assert _segment(scans, tmp_path / "out") == 1
    captured = capsys.readouterr()
    assert "case_000" in captured.out  # the summary table
    assert "lung masks" not in captured.err and "scan/s" not in captured.err and "it/s" not in captured.err


def test_progress_bar_is_drawn_on_a_terminal(monkeypatch, capsys):
    import io

    from radiolab.executors import _progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with _progress_bar(2, "lung masks", True) as bar:
        bar.update(2)
    with _progress_bar(2, "labels", False) as bar:  # --quiet
        bar.update(2)
    assert "lung masks" in terminal.getvalue() and "labels" not in terminal.getvalue()
