"""The dashboard's JSON API under ``/api/``; the pages use nothing else.

Every endpoint reads the store, except ``PATCH /api/runs/{run}``, which changes a run's
note and tags: the only writes the dashboard makes (the store is otherwise written by
training processes, which keep running while the dashboard reads). The endpoints are
declared once in :data:`ENDPOINTS`, which gives both the routes and the OpenAPI
document served at ``/api/openapi.json``.

Errors are ``{"error": message}`` with 400 (bad parameter; the message says the
accepted form), 404 (no such run, report, series or file) or 415 (a write not sent as
JSON).
"""

from __future__ import annotations

import json
import math
import mimetypes
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from danlu.errors import RunNotFound, StoreError
from danlu.repro.diff import differences
from danlu.store.base import RunRecord, Store
from danlu.ui.cache import RunsSnapshot, SeriesCache
from danlu.ui.downsample import DOWNSAMPLERS, downsample
from danlu.ui.guard import artefact_path
from danlu.ui.query import QueryError, filter_rows, parse_query, sort_rows
from danlu.ui.rows import (
    RowCache,
    diagnosis_from_report,
    diagnosis_of,
    metrics_of,
    to_row,
    varying_keys,
)

__all__ = ["Dashboard", "ENDPOINTS", "routes", "openapi", "ApiError", "json_response"]

#: Most points one chart request may ask for; the pages ask for 2,000.
MAX_POINTS = 20_000
#: Most series in one chart request.
MAX_SERIES = 64
#: Longest note and tag the dashboard accepts.
MAX_NOTE, MAX_TAG, MAX_TAGS = 10_000, 64, 64
#: Image types a report may show inline; other artefacts are sent as downloads.
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "application/json", "text/csv"}


class ApiError(Exception):
    """An answer other than 200: the status and the message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Dashboard:
    """The store the API reads, the caches in front of it, and the lock of its one write."""

    def __init__(self, store: Store, runs_max_age: float = 1.0) -> None:
        self.store = store
        self.runs = RunsSnapshot(store.list_runs, max_age=runs_max_age, prepare=self._prepare_rows)
        self.lock = threading.Lock()      # one write at a time: the store's note/tags, the caches' dicts
        self.cache = SeriesCache(self._read_series)
        self.runs_root = Path(store.root) / "runs"
        self.rows = RowCache()
        self.queries: dict[tuple, tuple] = {}   # runs-table answers of the current run list

    def warm(self) -> None:
        """Read the run list and build the table's rows now (the server calls this in the
        background at start-up, so the first page view does not wait for the store)."""
        try:
            self.runs.get()
        except Exception:  # noqa: BLE001 - a broken store shows on the first request instead
            pass

    def _prepare_rows(self, records: list[RunRecord]) -> None:
        self.rows.index(records)
        self.rows.totals(records)

    def _read_series(self, run_id: str, name: str, start: int | None):
        return self.store.read_series(run_id, name, start)

    def run(self, ref: str) -> RunRecord:
        try:
            return self.store.get_run(ref)
        except RunNotFound as exc:
            raise ApiError(404, str(exc)) from exc

    def run_dir(self, run_id: str) -> Path:
        return Path(self.store.run_dir(run_id, create=False))


# ---------------------------------------------------------------- helpers
def _clean(value: Any) -> Any:
    """Strict-JSON values: NaN and infinities become null in numbers lists, text elsewhere."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    from danlu.plain import jsonable

    return jsonable(value)


def json_response(data: Any, status: int = 200, clean: bool = True) -> Response:
    body = json.dumps(_clean(data) if clean else data, separators=(",", ":"), allow_nan=False)
    return Response(body, status_code=status, media_type="application/json")


def _numbers(values: np.ndarray) -> list[float | None]:
    """A float array as a JSON list with null for NaN/inf (a diverged run's gap)."""
    out = values.tolist()
    if not np.isfinite(values).all():
        out = [v if math.isfinite(v) else None for v in out]
    return out


def _int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    text = request.query_params.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(float(text))
    except ValueError as exc:
        raise ApiError(400, f"{name}={text!r} is not a number; give e.g. {name}={default or lo}") from exc
    return max(lo, min(hi, value))


def _float_param(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if text in (None, "", "null"):
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise ApiError(400, f"{name}={text!r} is not a number (a step)") from exc
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be a finite step, not {text!r}")
    return value


def _report_brief(rec) -> dict[str, Any]:
    data = rec.data if isinstance(rec.data, dict) else {}
    return {
        "id": rec.id,
        "run_id": rec.run_id,
        "kind": rec.kind,
        "created": rec.created,
        "title": data.get("title", rec.kind),
        "status": data.get("status", ""),
        "counts": data.get("counts", {}),
    }


def _files(root: Path, runs_root: Path, limit: int = 500) -> list[dict[str, Any]]:
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*")):
        if len(out) >= limit:
            break
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            out.append({
                "name": str(path.relative_to(root)),
                "path": str(path.relative_to(runs_root)),
                "size": st.st_size,
                "modified": st.st_mtime,
            })
    return out


# -------------------------------------------------------------- endpoints
#: The runs the table shows by default: training runs (from `danlu train`, a study, or `danlu.init`).
TRAINING_KINDS = frozenset({"train", "init"})


def list_runs(request: Request) -> Response:
    """The runs table: filtered (by default to training runs; ``kind=all`` or ``kind=check,audit``
    for others), sorted, one page of rows.

    Also returns the hyperparameters that vary among the matched runs, the summary
    metrics they report, every tag and the count of runs by status.
    """
    dash: Dashboard = request.app.state.dashboard
    params = request.query_params
    started = time.perf_counter()
    query = parse_query(params.get("q", ""), statuses=params.getlist("status"), tags=params.getlist("tag"))
    limit = _int_param(request, "limit", 200, 1, 100_000)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    records = dash.runs.get()
    ids = frozenset(i for part in params.getlist("ids") for i in part.split(",") if i)
    kind = params.get("kind", "") or ("all" if ids else "train")
    key = (params.get("q", ""), tuple(params.getlist("status")), tuple(params.getlist("tag")),
           params.get("sort") or "-created", kind, ids)
    memo = dash.queries.get(key)
    if memo is not None and memo[0] is records:       # same run list, same question: same answer
        _, rows, as_json, matched, head_data = memo
    else:
        rows, as_json = dash.rows.index(records)
        kinds = Counter(r.kind for r in rows)
        wanted = None if kind == "all" else TRAINING_KINDS if kind == "train" else set(kind.split(","))
        shown = rows if wanted is None else [r for r in rows if r.kind in wanted]
        if ids:
            shown = [r for r in shown if r.id in ids]
        matched = sort_rows(filter_rows(shown, query), key[3])
        metrics: Counter[str] = Counter()
        for names, count in Counter(tuple(row.metrics) for row in matched).items():
            for name in names:
                metrics[name] += count
        head_data = {
            "total": len(rows),
            "matched": len(matched),
            "varying": varying_keys(r.config for r in matched),
            "metrics": [k for k, _ in sorted(metrics.items(), key=lambda kv: (-kv[1], kv[0]))],
            **dash.rows.totals(records),
            "kinds": dict(sorted(kinds.items())),
            "kind": kind,
            "store": dash.store.display,
        }
        with dash.lock:
            dash.queries[key] = (records, rows, as_json, matched, head_data)
            while len(dash.queries) > 16:
                dash.queries.pop(next(iter(dash.queries)))
    page = matched[offset: offset + limit]
    head = json.dumps(_clean({**head_data, "offset": offset, "limit": limit,
                              "seconds": round(time.perf_counter() - started, 4)}),
                      separators=(",", ":"), allow_nan=False)
    body = head[:-1] + ',"runs":[' + ",".join(as_json[id(r)] for r in page) + "]}"
    return Response(body, media_type="application/json")


def get_run(request: Request) -> Response:
    """One run in full: settings, summary, diagnosis, reproducibility record, series,
    checkpoints, artefacts and the reports linked to it."""
    dash: Dashboard = request.app.state.dashboard
    run = dash.run(request.path_params["run"])
    data = asdict(run)
    data["duration"] = run.duration
    data["diagnosis"] = diagnosis_of(run.summary or {})
    data["metrics"] = metrics_of(run.summary or {})
    data["series"] = dash.store.series_names(run.id)
    folder = dash.run_dir(run.id)
    data["checkpoints"] = _files(folder / "checkpoints", dash.runs_root)
    data["artefacts"] = _files(folder, dash.runs_root)
    reports = dash.store.list_reports(run.id)
    data["reports"] = [_report_brief(r) for r in reports]
    latest = next((r for r in reports if r.kind == "diagnosis" and isinstance(r.data, dict)), None)
    if latest is not None:
        label = (data["diagnosis"] or {}).get("label")
        found = diagnosis_from_report(latest.data, label)
        if found is not None:
            data["diagnosis"] = {**found, "report_id": latest.id}
    return json_response(data)


async def edit_run(request: Request) -> Response:
    """Change a run's note and/or tags: ``{"note": "...", "tags": ["a", "b"]}``.

    The only write the dashboard makes. Tags are replaced by the given list.
    """
    dash: Dashboard = request.app.state.dashboard
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, 'the body must be JSON like {"note": "...", "tags": ["a"]}') from exc
    if not isinstance(body, dict) or not body or set(body) - {"note", "tags"}:
        raise ApiError(400, 'send {"note": TEXT} and/or {"tags": [TAG, ...]}; nothing else can be changed')
    note, tags = body.get("note"), body.get("tags")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise ApiError(400, f"note must be text of at most {MAX_NOTE} characters")
    if tags is not None:
        if not isinstance(tags, list) or len(tags) > MAX_TAGS or not all(isinstance(t, str) for t in tags):
            raise ApiError(400, f"tags must be a list of at most {MAX_TAGS} texts")
        tags = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
        bad = [t for t in tags if len(t) > MAX_TAG or "," in t
               or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in t)]
        if bad:
            raise ApiError(400, f"tag {bad[0]!r} is not valid: at most {MAX_TAG} characters, "
                                "no spaces, commas or control characters")
    if note is not None and any(ord(c) < 32 and c not in "\n\t" for c in note):
        raise ApiError(400, "note must be plain text (line breaks and tabs are fine, other control characters not)")

    def write() -> RunRecord:
        with dash.lock:
            run = dash.run(request.path_params["run"])
            if note is not None:
                dash.store.update_run(run.id, note=note)
            if tags is not None:
                dash.store.set_tags(run.id, add=[t for t in tags if t not in run.tags],
                                    remove=[t for t in run.tags if t not in tags])
            fresh = dash.store.get_run(run.id)
            dash.runs.replace(fresh)
            return fresh

    from starlette.concurrency import run_in_threadpool

    run = await run_in_threadpool(write)
    return json_response(to_row(run).to_dict())


@dataclass
class _Spec:
    run: str
    series: str
    values: list = field(default_factory=list)


def chart(request: Request) -> Response:
    """Curves for one chart, downsampled with extremes kept, on one shared step axis.

    ``s=RUN:SERIES`` (repeat for several curves, of one run or of several), the step
    window ``start``/``end`` (a zoom), ``points`` (the budget for the whole chart,
    shared among its curves; default 2000) and ``method`` (``minmax`` or ``lttb``).
    Answers ``{"x": [steps], "series": [{"values": [...], "total": N, ...}], ...}``
    where a curve has ``null`` at steps it did not log (and at NaN/inf points).
    """
    dash: Dashboard = request.app.state.dashboard
    raw = request.query_params.getlist("s")
    if not raw or len(raw) > MAX_SERIES:
        raise ApiError(400, f"give 1 to {MAX_SERIES} curves as s=RUN:SERIES, e.g. s=abc123:train/loss")
    specs = []
    for item in raw:
        run_ref, sep, name = item.partition(":")
        if not sep or not run_ref or not name:
            raise ApiError(400, f"s={item!r} must be RUN:SERIES, e.g. s=abc123:train/loss")
        specs.append((run_ref, name))
    points = _int_param(request, "points", 2000, 10, MAX_POINTS)
    method = request.query_params.get("method", "minmax")
    if method not in DOWNSAMPLERS:
        raise ApiError(400, f"method={method!r} is unknown; use one of {', '.join(sorted(DOWNSAMPLERS))}")
    start, end = _float_param(request, "start"), _float_param(request, "end")
    runs = {ref: dash.run(ref) for ref in {r for r, _ in specs}}
    full = [dash.cache.get(runs[r].id, name, runs[r].status) for r, name in specs]
    counts = []
    for steps, _ in full:
        lo = 0 if start is None else int(np.searchsorted(steps, start, "left"))
        hi = len(steps) if end is None else int(np.searchsorted(steps, end, "right"))
        counts.append(max(0, hi - lo))
    budgets = _share(points, counts)
    parts = [downsample(steps, values, max(2, b), start=start, end=end, method=method)
             for (steps, values), b in zip(full, budgets)]
    x = np.unique(np.concatenate([p.steps for p in parts])) if parts else np.array([], np.int64)
    series = []
    for (run_ref, name), part, (steps, _) in zip(specs, parts, full):
        column = np.full(len(x), np.nan)
        column[np.searchsorted(x, part.steps)] = part.values
        run = runs[run_ref]
        series.append({
            "run": run.id, "run_name": run.name, "status": run.status, "name": name,
            "values": _numbers(column), "total": part.total, "shown": len(part.steps),
            "nonfinite": part.nonfinite, "first_nonfinite": part.first_nonfinite, "method": part.method,
            "min_step": int(steps[0]) if len(steps) else None,
            "max_step": int(steps[-1]) if len(steps) else None,
        })
    extent = [s for s in (p["min_step"] for p in series) if s is not None]
    extent_hi = [s for s in (p["max_step"] for p in series) if s is not None]
    return json_response({
        "x": x.tolist(), "series": series, "start": start, "end": end, "points": points,
        "x_min": min(extent) if extent else None, "x_max": max(extent_hi) if extent_hi else None,
    }, clean=False)


def _share(budget: int, counts: list[int]) -> list[int]:
    """Split a chart's point budget among its curves: short curves keep every point,
    long ones share the rest equally (water-filling)."""
    out = [0] * len(counts)
    left = budget
    order = sorted(range(len(counts)), key=lambda i: counts[i])
    for k, i in enumerate(order):
        give = min(counts[i], left // (len(counts) - k))
        out[i] = give
        left -= give
    return out


def compare(request: Request) -> Response:
    """Several runs side by side: ``ids=a,b,c`` (or ``id`` repeated). Returns the runs,
    the series each has, and every hyperparameter, code, environment, data or outcome
    value on which they differ."""
    dash: Dashboard = request.app.state.dashboard
    ids = [i for part in request.query_params.getlist("ids") for i in part.split(",") if i]
    ids += request.query_params.getlist("id")
    ids = list(dict.fromkeys(ids))
    if not 1 <= len(ids) <= 16:
        raise ApiError(400, "give 1 to 16 runs to compare, e.g. ids=abc123,def456")
    runs = [dash.run(i) for i in ids]
    series: dict[str, list[str]] = {}
    for run in runs:
        for name in dash.store.series_names(run.id):
            series.setdefault(name, []).append(run.id)
    return json_response({
        "runs": [to_row(r).to_dict() for r in runs],
        "series": series,
        "differences": [d.to_dict() for d in differences(runs)],
    })


def list_reports(request: Request) -> Response:
    """Reports in the store, newest first; ``run`` and ``kind`` narrow the list."""
    dash: Dashboard = request.app.state.dashboard
    run = request.query_params.get("run") or None
    run_id = dash.run(run).id if run else None
    kind = request.query_params.get("kind") or None
    records = dash.store.list_reports(run_id, kind)
    names = {}
    for rec in records:
        if rec.run_id and rec.run_id not in names:
            try:
                names[rec.run_id] = dash.store.get_run(rec.run_id).name
            except RunNotFound:
                names[rec.run_id] = None
    return json_response({"reports": [{**_report_brief(r), "run_name": names.get(r.run_id)} for r in records]})


def get_report(request: Request) -> Response:
    """One report (``Report.to_dict()``: findings, tables, images) and the run it belongs to."""
    dash: Dashboard = request.app.state.dashboard
    try:
        report_id = int(request.path_params["report"])
        rec = dash.store.get_report(report_id)
    except (ValueError, KeyError, LookupError, StoreError) as exc:
        raise ApiError(404, f"no report {request.path_params['report']!r} in this store; "
                            "see /api/reports for the list") from exc
    run_name = None
    if rec.run_id:
        try:
            run_name = dash.store.get_run(rec.run_id).name
        except RunNotFound:
            pass
    return json_response({**_report_brief(rec), "run_name": run_name, "report": rec.data})


def get_file(request: Request) -> Response:
    """An artefact under the store's runs/ folder (``RUN_ID/checkpoints/best.pt``,
    a report's image). Anything else (``..``, encoded slashes, absolute paths) is 404."""
    dash: Dashboard = request.app.state.dashboard
    path = artefact_path(dash.runs_root, request.scope.get("raw_path", b""), request.path_params["path"])
    if path is None:
        raise ApiError(404, "no such artefact under the store's runs folder")
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    inline = media in INLINE_TYPES
    return FileResponse(
        path,
        media_type=media if inline else "application/octet-stream",
        filename=None if inline else path.name,
        content_disposition_type="inline" if inline else "attachment",
        headers={"content-security-policy": "sandbox; default-src 'none'; img-src 'self'"},
    )


def info(request: Request) -> Response:
    """The dashboard's version and the store it reads."""
    from danlu import __version__

    dash: Dashboard = request.app.state.dashboard
    return json_response({"version": __version__, "store": dash.store.display,
                          "downsamplers": sorted(DOWNSAMPLERS)})


def openapi_json(request: Request) -> Response:
    """This API described as OpenAPI 3."""
    return json_response(openapi(), clean=False)


# ------------------------------------------------------------- the table
@dataclass
class ApiParam:
    name: str
    where: str = "query"          # "query" or "path"
    type: str = "string"
    description: str = ""
    repeat: bool = False


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Callable
    params: list[ApiParam] = field(default_factory=list)
    body: dict[str, Any] | None = None


ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/info", info),
    Endpoint("GET", "/runs", list_runs, [
        ApiParam("q", description="filter words: text, status:S, tag:T, NAME:LO..HI, NAME>=X (see danlu.ui.query)"),
        ApiParam("status", description="only runs with this status", repeat=True),
        ApiParam("tag", description="only runs with this tag", repeat=True),
        ApiParam("sort", description="field, '-' first for descending: created, name, status, duration, "
                                  "primary, config.NAME, metrics.NAME"),
        ApiParam("kind", description="train (default: training runs), all, or kinds joined by commas "
                                  "(check,audit,lr,study,cases,...)"),
        ApiParam("ids", description="only these runs (ids joined by commas); any kind", repeat=True),
        ApiParam("limit", type="integer", description="rows per page (default 200)"),
        ApiParam("offset", type="integer", description="rows to skip"),
    ]),
    Endpoint("GET", "/runs/{run}", get_run, [ApiParam("run", "path", description="id, id prefix, name or 'last'")]),
    Endpoint("PATCH", "/runs/{run}", edit_run, [ApiParam("run", "path", description="id, id prefix, name or 'last'")],
             body={"type": "object", "properties": {"note": {"type": "string"},
                                                    "tags": {"type": "array", "items": {"type": "string"}}}}),
    Endpoint("GET", "/chart", chart, [
        ApiParam("s", description="RUN:SERIES, one per curve", repeat=True),
        ApiParam("start", type="number", description="first step of the window (zoom)"),
        ApiParam("end", type="number", description="last step of the window (zoom)"),
        ApiParam("points", type="integer", description="point budget for the chart (default 2000)"),
        ApiParam("method", description="minmax (default) or lttb"),
    ]),
    Endpoint("GET", "/compare", compare, [ApiParam("ids", description="comma-separated runs")]),
    Endpoint("GET", "/reports", list_reports, [ApiParam("run"), ApiParam("kind")]),
    Endpoint("GET", "/reports/{report}", get_report, [ApiParam("report", "path", "integer")]),
    Endpoint("GET", "/files/{path:path}", get_file, [ApiParam("path", "path", description="RUN_ID/relative/path")]),
    Endpoint("GET", "/openapi.json", openapi_json),
]


def openapi() -> dict[str, Any]:
    """The OpenAPI 3 document of :data:`ENDPOINTS`, from their docstrings."""
    paths: dict[str, Any] = {}
    for ep in ENDPOINTS:
        doc = (ep.handler.__doc__ or "").strip()
        summary, _, description = doc.partition("\n\n")
        op: dict[str, Any] = {
            "summary": " ".join(summary.split()),
            "description": " ".join(description.split()),
            "operationId": ep.handler.__name__,
            "parameters": [
                {"name": p.name, "in": p.where, "required": p.where == "path", "description": p.description,
                 "schema": {"type": "array", "items": {"type": p.type}} if p.repeat else {"type": p.type}}
                for p in ep.params
            ],
            "responses": {"200": {"description": "JSON"}, "400": {"description": "bad parameter"},
                          "404": {"description": "not found"}},
        }
        if ep.body:
            op["requestBody"] = {"content": {"application/json": {"schema": ep.body}}}
        paths.setdefault("/api" + ep.path.replace(":path", ""), {})[ep.method.lower()] = op
    from danlu import __version__

    return {"openapi": "3.0.3", "info": {"title": "danlu dashboard API", "version": __version__}, "paths": paths}


def routes() -> list[Route]:
    """The API's routes (mounted at /api by :func:`danlu.ui.app.create_app`)."""
    return [Route(ep.path, _wrap(ep.handler), methods=[ep.method], name=ep.handler.__name__) for ep in ENDPOINTS]


def _wrap(handler: Callable) -> Callable:
    """Turn ApiError, QueryError and store errors into JSON answers."""
    import functools
    import inspect

    from starlette.concurrency import run_in_threadpool

    def timed(request: Request) -> Response:
        wall, cpu = time.perf_counter(), time.thread_time()
        response = handler(request)
        # the server's own time for this answer (wall and CPU of its thread), for the
        # browser's network panel and benchmarks/ui_speed.py
        response.headers["server-timing"] = (
            f"app;dur={(time.perf_counter() - wall) * 1000:.1f}, cpu;dur={(time.thread_time() - cpu) * 1000:.1f}"
        )
        return response

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            if inspect.iscoroutinefunction(handler):
                return await handler(request)
            return await run_in_threadpool(timed, request)
        except ApiError as exc:
            return json_response({"error": exc.message}, exc.status)
        except QueryError as exc:
            return json_response({"error": str(exc)}, 400)
        except RunNotFound as exc:
            return json_response({"error": str(exc)}, 404)
        except StoreError as exc:
            return json_response({"error": f"the store could not be read: {exc}"}, 503)

    return endpoint
