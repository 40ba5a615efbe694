"""Declarative pipelines: chains of registered stages, read from YAML and validated.

A pipeline file names stages from one explicit registry, :data:`STAGES`, each with
parameters checked against that stage's configuration dataclass::

    name: zaffino2021
    description: the published method, end to end
    stages:
      - stage: ingest
      - stage: segment
        params: {preset: zaffino2021, model: fit, seed: 0}
      - stage: features
        params: {map: median}
      - stage: correlate
        params: {score_col: S}

An unknown key, stage or parameter, a value of the wrong type, or stages out of order
is an :class:`~radiolab.errors.InputError` that names the file, the place and the
culprit and lists the valid choices. :func:`run_pipeline` runs the chain:

======== ========================================= ===============================
stage    reads                                     writes (under ``out_dir``)
======== ========================================= ===============================
ingest   DICOM folder ``--in``                     ``volumes/`` (skipped when
                                                   ``--in`` holds volume files)
segment  the volumes                               ``labels/`` (radiolab segment)
features volumes + ``labels/``                     ``features.csv``
correlate ``--scores`` CSV + ``labels/``           ``correlation/`` (skipped
                                                   without ``--scores``)
======== ========================================= ===============================

Segment runs on the chosen backend (joblib, Dask, SLURM/PBS) and resumes per scan. The
other stages are skipped on a rerun when their record in ``pipeline.json`` shows the
same parameters, the same algorithm versions (`Stage.versions`, bumped with any change
of a stage's output) and the same upstream outputs (``force`` reruns them). Stage modules
are imported only when the stage runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from radiolab import __version__
from radiolab.errors import InputError, ParameterError, RadiolabError, StageError
from radiolab.io import is_volume_file, write_json_atomic
from radiolab.segment import SegmentConfig

TOP_LEVEL_KEYS = ("name", "description", "stages")
STAGE_KEYS = ("stage", "params")


# -- stage parameters ---------------------------------------------------------------------

@dataclass(frozen=True)
class IngestParams:
    """Parameters of the ``ingest`` stage (`radiolab.dicom.ingest`).

    Attributes
    ----------
    compression_level : int
        gzip level of the NRRD volumes, 1 (fast) to 9 (smallest).
    assume_ct : bool
        Read series without a Modality tag as CT even without CT evidence.
    allow_gaps : bool
        Interpolate across gaps in the slice positions instead of refusing the series.
    """

    compression_level: int = 1
    assume_ct: bool = False
    allow_gaps: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.compression_level <= 9:
            raise ParameterError(f"compression_level must be 1..9, got {self.compression_level}")


@dataclass(frozen=True)
class FeaturesParams:
    """Parameters of the ``features`` stage (``radiolab features``).

    Attributes
    ----------
    map : {"voxel", "median"}
        Which label map the regions come from: voxel-wise or median-filtered.
    params : str, optional
        A pyradiomics parameter file (YAML); relative paths are read from the
        pipeline file's folder.
    """

    map: str = "median"
    params: str | None = None

    def __post_init__(self) -> None:
        if self.map not in ("voxel", "median"):
            raise ParameterError(f"map must be 'voxel' or 'median', got {self.map!r}")


@dataclass(frozen=True)
class CorrelateParams:
    """Parameters of the ``correlate`` stage (`radiolab.stats.run_correlation`).

    Attributes
    ----------
    id_col, score_col : str
        Columns of the scores CSV holding the scan id and the clinical score.
    iterations : int
        Resampling iterations.
    seed : int
        Seed of the resampling.
    """

    id_col: str = "id"
    score_col: str = "S"
    iterations: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ParameterError(f"iterations must be at least 1, got {self.iterations}")


def _check_segment(config: SegmentConfig) -> None:
    from radiolab.lung import BACKENDS

    config.lung_settings()  # unknown preset or bad override: ValueError
    if config.backend not in BACKENDS:
        raise ParameterError(f"backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
    if config.median_size < 1 or config.n_init < 1 or config.tol <= 0:
        raise ParameterError("median_size and n_init must be at least 1 and tol positive")


# -- the run --------------------------------------------------------------------------------

@dataclass
class RunContext:
    """What stages share during one run.

    Attributes
    ----------
    inputs : list of str
        The ``--in`` paths.
    out_dir : Path
        The run's output folder.
    base_dir : Path
        Folder of the pipeline file (relative parameter paths are read from it).
    scores : str, optional
        The ``--scores`` CSV.
    backend : dict
        ``jobs``, ``cluster``, ``workers``, ``scheduler``, ``scheduler_file``,
        ``cluster_config``, ``attempts`` (see `radiolab.executors.make_executor`).
    force, progress : bool
    state : dict
        Outputs of earlier stages: ``scans`` (list of paths), ``labels`` (folder),
        ``features`` (CSV); ``fingerprint`` of the latest stage's outputs.
    """

    inputs: list[str]
    out_dir: Path
    base_dir: Path = Path(".")
    scores: str | None = None
    backend: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    progress: bool = False
    executor: Any = None
    state: dict[str, Any] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageResult:
    """What one stage did: ``status`` is ``done``, ``skipped`` or ``failed``."""

    stage: str
    status: str
    message: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    up_to_date: bool = False


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _import_stage_module(stage: str):
    """The module a registered stage runs (imported now, not when radiolab is)."""
    import importlib

    module = STAGES[stage].module
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and (module == error.name or module.startswith(error.name + ".")):
            raise StageError("pipeline", stage, f"this radiolab has no {module} module; the {stage!r} stage "
                                         "cannot run") from None
        raise


def _run_ingest(context: RunContext, params: IngestParams) -> StageResult:
    if any(is_volume_file(p) or _holds_volume_files(p) for p in context.inputs):
        context.state["scans"] = list(context.inputs)
        context.state["fingerprint"] = ""
        return StageResult("ingest", "skipped", "the inputs are volume files; nothing to convert")
    if len(context.inputs) != 1 or not os.path.isdir(context.inputs[0]):
        raise StageError("pipeline", "ingest", "ingest reads one folder of DICOM files; give --in DICOM_ROOT")
    root = context.inputs[0]
    out = context.out_dir / "volumes"
    key = _hash({"params": dataclasses.asdict(params), "listing": _listing_fingerprint(root),
                 "versions": algorithm_versions("ingest")})
    previous = context.records.get("ingest", {})
    written = previous.get("outputs", {}).get("written", [])
    context.state["scans"] = [str(out)]
    if (not context.force and previous.get("key") == key and previous.get("status") == "done"
            and all(os.path.isfile(p) for p in written)):
        context.state["fingerprint"] = key
        return StageResult("ingest", "skipped", "up to date", previous.get("outputs", {}), key, up_to_date=True)
    dicom = _import_stage_module("ingest")
    report = dicom.ingest(root, out, compression_level=params.compression_level,
                          assume_ct=params.assume_ct, allow_gaps=params.allow_gaps)
    if not report.written:
        problems = "; ".join(str(x) for x in [*report.failed, *report.skipped][:3])
        raise StageError("pipeline", "ingest", f"no CT series written from {root}" + (f" ({problems})" if problems else ""))
    context.state["fingerprint"] = key
    message = f"{len(report.written)} series written, {len(report.skipped)} skipped, {len(report.failed)} failed"
    return StageResult("ingest", "done", message, {"volumes": str(out), "written": sorted(report.written)}, key)


def _holds_volume_files(path: str) -> bool:
    if not os.path.isdir(path):
        return False
    with os.scandir(path) as entries:
        return any(is_volume_file(entry.name) for entry in entries)


def _listing_fingerprint(root: str) -> str:
    """Hash of every file's relative path, size and modification time under ``root``."""
    entries = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(folder, name)
            stat = os.stat(path)
            entries.append((os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns))
    return _hash(entries)


def _run_segment(context: RunContext, params: SegmentConfig) -> StageResult:
    from radiolab.segment import find_inputs, segment_cohort

    scans, skipped_inputs = find_inputs(context.state.get("scans", context.inputs))
    out = context.out_dir / "labels"
    backend = {} if context.executor is not None else context.backend
    report = segment_cohort(scans, out, params, force=context.force, progress=context.progress,
                            executor=context.executor, **backend)
    context.state["labels"] = str(out)
    context.state["segment_report"] = report
    message = (f"{len(report.done)} scan(s) done, {len(report.skipped)} skipped (up to date), "
               f"{len(report.errors)} failed")
    if not report.rows:
        raise StageError("pipeline", "segment", f"no scan was labelled ({message}); see {out / 'errors.csv'}")
    key = _hash({"config": params.to_json(), "versions": algorithm_versions("segment"),
                 "mixture": report.mixture.to_json() if report.mixture else None,
                 "scans": sorted(row["id"] for row in report.rows),
                 "summary": _file_hash(out / "summary.csv")})
    context.state["fingerprint"] = key
    status = "done" if report.done else "skipped"
    return StageResult("segment", status, message, {"labels": str(out), "summary": str(out / "summary.csv")}, key,
                       up_to_date=not report.done)


def _file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _run_features(context: RunContext, params: FeaturesParams) -> StageResult:
    out = context.out_dir / "features.csv"
    param_file = None if params.params is None else str((context.base_dir / params.params).resolve())
    key = _hash({"params": dataclasses.asdict(params), "param_file": _file_hash(Path(param_file)) if param_file else "",
                 "upstream": context.state.get("fingerprint", ""), "versions": algorithm_versions("features")})
    context.state["features"] = str(out)
    skipped = _up_to_date(context, "features", key, [out])
    if skipped is not None:
        return skipped
    cli = _import_stage_module("features")
    scans = context.state.get("scans", context.inputs)
    argv = ["--in", *scans, "--labels", context.state["labels"], "--out", str(out), "--map", params.map,
            "--jobs", str(context.backend.get("jobs", 1))]
    if param_file is not None:
        argv += ["--params", param_file]
    status = cli.main(argv)
    if status not in (0, None) or not out.is_file():
        raise StageError("pipeline", "features", f"`radiolab features` exited with status {status}")
    return StageResult("features", "done", f"wrote {out}", {"features": str(out)}, key)


def _run_correlate(context: RunContext, params: CorrelateParams) -> StageResult:
    if context.scores is None:
        return StageResult("correlate", "skipped", "no --scores given; the correlation needs a scores CSV")
    if not os.path.isfile(context.scores):
        raise InputError(context.scores, "scores file does not exist")
    out = context.out_dir / "correlation"
    key = _hash({"params": dataclasses.asdict(params), "scores": _file_hash(Path(context.scores)),
                 "upstream": context.state.get("fingerprint", ""), "versions": algorithm_versions("correlate")})
    skipped = _up_to_date(context, "correlate", key, [out])
    if skipped is not None:
        return skipped
    stats = _import_stage_module("correlate")
    stats.run_correlation(context.scores, context.state["labels"], str(out), id_col=params.id_col,
                          score_col=params.score_col, iterations=params.iterations, seed=params.seed)
    return StageResult("correlate", "done", f"wrote {out}", {"correlation": str(out)}, key)


def _up_to_date(context: RunContext, stage: str, key: str, outputs: Sequence[Path]) -> StageResult | None:
    previous = context.records.get(stage, {})
    if (not context.force and previous.get("status") == "done" and previous.get("key") == key
            and all(p.exists() for p in outputs)):
        return StageResult(stage, "skipped", "up to date", previous.get("outputs", {}), key, up_to_date=True)
    return None


@dataclass(frozen=True)
class Stage:
    """A registered stage: its parameter model, its adapter, what it needs before it.

    Attributes
    ----------
    key : str
        Name used in pipeline files.
    summary : str
        One line for listings.
    params : type
        Dataclass of the stage's parameters (types and defaults).
    run : callable
        ``run(context, params) -> StageResult``.
    after : tuple of str
        Stages that must come earlier in a pipeline when present; ``requires`` must be
        present.
    check : callable, optional
        Extra validation of the parameters (raises ValueError).
    module : str
        The module the stage imports when it runs (checked before a run starts).
    versions : dict of str to int
        Algorithm version of each step of the stage (one step for most stages; segment
        has ``lung_mask``, ``mixture_fit`` and ``labels``). Bump a step's version with
        any change of the code that changes what the step writes: the version is part
        of the step's resume key, so a rerun recomputes that step's outputs and what
        depends on them, and nothing else. Every output records the versions it was
        made with.
    """

    key: str
    summary: str
    params: type
    run: Callable[[RunContext, Any], StageResult]
    after: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None
    module: str = ""
    versions: dict[str, int] = field(default_factory=dict)


#: The stage registry: the only place a stage is named.
STAGES: dict[str, Stage] = {
    "ingest": Stage("ingest", "DICOM CT series -> NRRD volumes (radiolab.dicom)", IngestParams, _run_ingest,
                    module="radiolab.dicom", versions={"ingest": 1}),
    "segment": Stage("segment", "lung mask, pooled mixture, tissue labels (radiolab.segment)", SegmentConfig,
                     _run_segment, after=("ingest",), check=_check_segment, module="radiolab.segment",
                     versions={"lung_mask": 1, "mixture_fit": 1, "labels": 1}),
    "features": Stage("features", "radiomic features of the tissue regions (radiolab features)",
                      FeaturesParams, _run_features, after=("ingest", "segment"), requires=("segment",),
                      module="radiolab.cli.features", versions={"features": 1}),
    "correlate": Stage("correlate", "correlation of tissue volumes with clinical scores (radiolab.stats)",
                       CorrelateParams, _run_correlate, after=("ingest", "segment", "features"),
                       requires=("segment",), module="radiolab.stats", versions={"correlate": 1}),
}


def algorithm_version(step: str) -> int:
    """The algorithm version of a step (``lung_mask``, ``labels``, ``features`` ...), from
    the versions of the registered stages (see `Stage`)."""
    for stage in STAGES.values():
        if step in stage.versions:
            return stage.versions[step]
    raise KeyError(f"no registered stage has a step {step!r}")


def algorithm_versions(stage: str) -> dict[str, int]:
    """The algorithm versions of a registered stage's steps (a copy)."""
    return dict(STAGES[stage].versions)


# -- the configuration model ------------------------------------------------------------------

@dataclass(frozen=True)
class StageSpec:
    """One step of a pipeline: a registered stage and its validated parameters."""

    stage: str
    params: Any

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "params": dataclasses.asdict(self.params)}


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline file."""

    name: str
    stages: tuple[StageSpec, ...]
    description: str = ""
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "stages": [spec.to_json() for spec in self.stages]}


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` checked against a type hint (ints accepted for floats, lists for tuples)."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option)
            except TypeError:
                continue
        raise TypeError
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return tuple(_coerce(v, typing.get_args(hint)[0]) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is Any:
        return value
    raise TypeError


def _params(stage: Stage, raw: Any, where: str, source: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(source, f"{where}: params must be a mapping, got {type(raw).__name__}")
    valid = [f.name for f in dataclasses.fields(stage.params)]
    unknown = [k for k in raw if k not in valid]
    if unknown:
        raise InputError(source, f"{where}: unknown parameter {unknown[0]!r} of stage {stage.key!r}; "
                                 f"valid parameters: {', '.join(valid)}")
    hints = typing.get_type_hints(stage.params)
    values = {}
    for name, value in raw.items():
        try:
            values[name] = _coerce(value, hints[name])
        except TypeError:
            raise InputError(source, f"{where}: parameter {name!r} of stage {stage.key!r} must be "
                                     f"{_type_name(hints[name])}, got {value!r}") from None
    try:
        params = stage.params(**values)
        if stage.check is not None:
            stage.check(params)
    except (TypeError, ValueError) as error:
        raise InputError(source, f"{where}: bad parameters of stage {stage.key!r}: {error}") from None
    return params


def parse_pipeline(data: Any, *, source: str = "pipeline") -> Pipeline:
    """Validate a pipeline mapping (a parsed YAML file).

    Raises
    ------
    InputError
        Naming ``source`` and the culprit: an unknown top-level key, stage key, stage
        or parameter (with the valid ones listed), a wrong type, a repeated stage, or
        a stage before one it needs.
    """
    if not isinstance(data, dict):
        raise InputError(source, f"a pipeline is a mapping with keys {', '.join(TOP_LEVEL_KEYS)}; "
                                 f"got {type(data).__name__}")
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise InputError(source, f"unknown key {unknown[0]!r}; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
    name = data.get("name", Path(source).stem)
    description = data.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise InputError(source, "'name' and 'description' must be strings")
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise InputError(source, f"'stages' must be a non-empty list; valid stages: {', '.join(STAGES)}")
    specs: list[StageSpec] = []
    for position, entry in enumerate(stages):
        where = f"stages[{position}]"
        if isinstance(entry, str):
            entry = {"stage": entry}
        if not isinstance(entry, dict):
            raise InputError(source, f"{where}: expected a mapping with keys {', '.join(STAGE_KEYS)}")
        unknown = [k for k in entry if k not in STAGE_KEYS]
        if unknown:
            raise InputError(source, f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(STAGE_KEYS)}")
        key = entry.get("stage")
        if key not in STAGES:
            raise InputError(source, f"{where}: unknown stage {key!r}; valid stages: {', '.join(STAGES)}")
        stage = STAGES[key]
        if any(spec.stage == key for spec in specs):
            raise InputError(source, f"{where}: stage {key!r} appears twice")
        specs.append(StageSpec(key, _params(stage, entry.get("params"), f"{where} ({key})", source)))
    order = [spec.stage for spec in specs]
    for position, key in enumerate(order):
        stage = STAGES[key]
        late = [k for k in stage.after if k in order[position + 1:]]
        if late:
            raise InputError(source, f"stage {key!r} must come after {late[0]!r}")
        missing = [k for k in stage.requires if k not in order]
        if missing:
            raise InputError(source, f"stage {key!r} needs stage {missing[0]!r} in the pipeline")
    return Pipeline(name=name, description=description, stages=tuple(specs), source=source)


def builtin_pipelines() -> list[str]:
    """Names of the shipped pipelines (``radiolab/data/pipelines/*.yaml`` that declare
    stages; see `radiolab.data`)."""
    from radiolab.data import pipeline_names

    return pipeline_names()


def load_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Read and validate a pipeline file; a bare name (``zaffino2021``) is a built-in
    pipeline, shipped inside the package (`radiolab.data`).

    Raises
    ------
    InputError
        If the file is missing, not YAML, or not a valid pipeline (see `parse_pipeline`).
    """
    import yaml

    from radiolab.data import resource

    path = os.fspath(path)
    text = None
    source = path
    if not os.path.exists(path) and os.sep not in path and not path.endswith((".yaml", ".yml")):
        builtin = resource("pipelines", f"{path}.yaml")
        if builtin.is_file():
            text, source = builtin.read_text(encoding="utf-8"), str(builtin)
    if text is None:
        if not os.path.isfile(path):
            available = builtin_pipelines()
            raise InputError(path, "pipeline file does not exist"
                             + (f"; built-in pipelines: {', '.join(available)}" if available else ""))
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(path, f"cannot read the pipeline file: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(path, f"not valid YAML: {error}") from None
    return parse_pipeline(data, source=str(source))


@dataclass
class PipelineReport:
    """What :func:`run_pipeline` did, one :class:`StageResult` per stage."""

    pipeline: Pipeline
    results: list[StageResult] = field(default_factory=list)
    segment: Any = None


def run_pipeline(
    pipeline: Pipeline | str | os.PathLike[str],
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    scores: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    cluster: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | os.PathLike[str] | None = None,
    cluster_config: str | os.PathLike[str] | None = None,
    attempts: int = 3,
    force: bool = False,
    progress: bool = False,
    executor: Any = None,
) -> PipelineReport:
    """Run a pipeline's stages in order on ``inputs``, writing under ``out_dir``.

    Parameters
    ----------
    pipeline : Pipeline or str or os.PathLike
        A validated pipeline or a pipeline file (or built-in name).
    inputs : path or sequence of paths
        Volume files / folders, or one DICOM folder when the pipeline starts with ingest.
    out_dir : str or os.PathLike
        Output folder (created); ``pipeline.json`` in it records the configuration
        and each stage's result.
    scores : str or os.PathLike, optional
        Clinical scores CSV for ``correlate`` (the stage is skipped without it).
    jobs, cluster, workers, scheduler, scheduler_file, cluster_config, attempts :
        Backend of the per-scan work, as in `radiolab.segment.segment_cohort`.
    force : bool
        Recompute outputs that are up to date.
    progress : bool
        Show progress bars.
    executor : radiolab.executors.Executor, optional
        Use this executor instead of making one from the backend options.

    Raises
    ------
    InputError
        For a bad pipeline file or input.
    StageError
        When a stage fails as a whole; ``stage`` names it, and the message says why.
    Exception
        Any other error inside a stage is a crash, not bad input: it is recorded in
        ``pipeline.json`` (``"stage": "internal"``) and raised as it is, traceback and all.
    """
    if not isinstance(pipeline, Pipeline):
        pipeline = load_pipeline(pipeline)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "pipeline.json"
    previous = _read_record(record_path)
    same_pipeline = previous.get("pipeline") == json.loads(json.dumps(pipeline.to_json()))
    base_dir = Path(pipeline.source).resolve().parent if pipeline.source else Path.cwd()
    context = RunContext(
        inputs=[os.fspath(p) for p in inputs], out_dir=out, base_dir=base_dir,
        scores=None if scores is None else os.fspath(scores),
        backend={"jobs": jobs, "cluster": cluster, "workers": workers, "scheduler": scheduler,
                 "scheduler_file": scheduler_file, "cluster_config": cluster_config, "attempts": attempts},
        force=force, progress=progress, executor=executor,
        records=previous.get("stages", {}) if same_pipeline else {},
    )
    for spec in pipeline.stages:
        # Find a missing stage module now, not after hours of segmentation.
        needed = spec.stage != "ingest" and not (spec.stage == "correlate" and scores is None)
        if needed and not module_available(STAGES[spec.stage].module):
            raise StageError(pipeline.name, spec.stage, f"this radiolab has no {STAGES[spec.stage].module} "
                                                        f"module; the {spec.stage!r} stage cannot run")
    report = PipelineReport(pipeline)
    record = {"radiolab_version": __version__, "pipeline": pipeline.to_json(), "inputs": context.inputs,
              "scores": context.scores, "stages": {}}
    for spec in pipeline.stages:
        stage = STAGES[spec.stage]
        try:
            result = stage.run(context, spec.params)
        except StageError as error:
            record["stages"][spec.stage] = {"status": "failed", "message": error.message}
            write_json_atomic(record_path, record)
            raise StageError(pipeline.name, spec.stage, error.message) from error
        except RadiolabError:
            record["stages"][spec.stage] = {"status": "failed"}
            write_json_atomic(record_path, record)
            raise
        except Exception as error:  # a crash, not bad input: recorded, then raised with its traceback
            record["stages"][spec.stage] = {"status": "failed", "stage": "internal",
                                            "message": f"{type(error).__name__}: {error}"}
            write_json_atomic(record_path, record)
            raise
        report.results.append(result)
        # An up-to-date stage keeps its "done" record, so that the next run skips it too.
        record["stages"][spec.stage] = {"status": "done" if result.up_to_date else result.status,
                                        "message": result.message, "outputs": result.outputs, "key": result.key,
                                        "algorithm_versions": algorithm_versions(spec.stage)}
        write_json_atomic(record_path, record)
    report.segment = context.state.get("segment_report")
    return report


def module_available(module: str) -> bool:
    """True if ``module`` can be imported (without importing it)."""
    import importlib.util
    import sys

    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def _read_record(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
