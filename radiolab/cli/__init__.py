"""The ``radiolab`` command: one module per subcommand, each with ``main(argv)``.

Subcommand modules are imported only when called, so ``radiolab segment`` never loads
torch, Dask or pyradiomics.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("radiolab.cli.ingest", "convert DICOM series under a folder into NRRD volumes"),
    "segment": ("radiolab.cli.segment", "lung masks, pooled mixture, tissue labels, median maps, summary"),
    "fit": ("radiolab.cli.fit", "pooled mixture fit from the histograms of a sharded segment run"),
    "run": ("radiolab.cli.run", "run a declared pipeline (pipelines/*.yaml) of stages"),
    "correlate": ("radiolab.cli.correlate", "correlate lung involvement with expert 0-5 scores (C, R^2, kappa)"),
    "robustness": ("radiolab.cli.robustness", "stability of the pooled mixture over random subsets of scans"),
    "qc": ("radiolab.cli.qc", "QC images (slices with tissue classes) and automatic flags of a segmented cohort"),
    "report": ("radiolab.cli.report", "one self-contained HTML report of a segmented cohort"),
    "classify": ("radiolab.cli.classify", "train, apply and evaluate slice/subject CT classifiers (needs torch)"),
    "features": ("radiolab.cli.features", "pyradiomics features per tissue class, lung and involved lung"),
    "demo": ("radiolab.cli.demo", "make a synthetic cohort and segment it"),
    "insert-lesions": ("radiolab.cli.insert_lesions", "grow GGO or consolidation of known extent from the pleura of a CT"),
}


def _usage() -> str:
    from radiolab import __version__

    width = max(len(name) for name in SUBCOMMANDS)
    lines = [f"usage: radiolab [--version] [-h] <command> [options] [-v | -vv | --log-level LEVEL]", "",
             f"radiolab {__version__}: volumetric chest-CT radiomics.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", "Run `radiolab <command> --help` for the options of a command.",
              "-v (-vv) logs each scan's progress (and debugging detail); --log-level sets the level",
              "(DEBUG, INFO, WARNING, ERROR; default WARNING). Progress bars show only on a terminal."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from radiolab.log import command_logging, pop_logging_options

    try:
        argv, level = pop_logging_options(argv)
    except ValueError as error:
        print(f"radiolab: {error}", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from radiolab import __version__

        print(f"radiolab {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"radiolab: unknown command {name!r}; valid commands: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    with command_logging(f"radiolab {name}", level or "WARNING"):
        module = importlib.import_module(SUBCOMMANDS[name][0])
        return int(module.main(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
