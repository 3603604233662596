"""``write_report``: one self-contained HTML page of a benchmark run.

>>> from ttasr.bench import run_bench, write_report, write_tables
>>> run_bench(["adassr"], ["span-x4"], ["proxy:camera"], seeds=[0], out_dir="bench-out")
>>> write_tables("bench-out")            # the report shows these tables (written if missing)
>>> write_report("bench-out")            # bench-out/report.html

The page holds the run's facts (devices, dates, methods, models, datasets), the result and
timing tables of :func:`~ttasr.bench.write_tables`, the plots of
:func:`~ttasr.bench.plots.write_plots` (where written) and, per image and model, rows of the
crops :func:`~ttasr.bench.run_bench` kept: bicubic LR, unadapted, every method and seed, HR,
each captioned with its crop's PSNR-Y and the image's scores. Every picture is embedded as
base64 and the styles are inline, so the file can be mailed or archived on its own; its only
script counts the decoded pictures into ``body[data-images-loaded]`` (checked by the tests).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._fs import atomic_write_bytes
from .jobs import UNADAPTED
from .results import MANIFEST, merge_results

__all__ = ["REPORT", "markdown_to_html", "write_report"]

log = logging.getLogger(__name__)

REPORT = "report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #bbb; padding: .25em .6em; text-align: left; }
th { background: #f0f0f0; }
dl.info { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dl.info dt { font-weight: 600; } dl.info dd { margin: 0; }
img.plot { max-width: 100%; border: 1px solid #ddd; }
.crops { display: flex; flex-wrap: wrap; gap: .6em; margin: .4em 0 1.2em; }
.crops figure { margin: 0; width: 200px; }
.crops img { width: 192px; height: 192px; image-rendering: pixelated; border: 1px solid #ccc; }
.crops figcaption { font-size: .8em; line-height: 1.3; }
.note { color: #666; font-size: .9em; }
"""

# Counts the pictures the browser decoded, for checks by a headless browser.
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  document.body.dataset.images = images.length;
  document.body.dataset.imagesLoaded = images.filter(function (i) {
    return i.complete && i.naturalWidth > 0; }).length;
});
"""


# ---------------------------------------------------------------------------- Markdown
def _cells(line: str) -> list[str]:
    """The cells of a ``| a | b |`` row, with ``\\|`` (an escaped bar) kept inside its cell."""
    body = line.strip()[1:]
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    cells, cell, i = [], "", 0
    while i < len(body):
        if body.startswith("\\|", i):
            cell, i = cell + "|", i + 2
        elif body[i] == "|":
            cells.append(cell.strip())
            cell, i = "", i + 1
        else:
            cell, i = cell + body[i], i + 1
    return [*cells, cell.strip()]


def markdown_to_html(text: str) -> str:
    """The Markdown that :func:`~ttasr.bench.write_tables` writes (pipe tables, ``- `` lists,
    ``#`` headings, paragraphs) as HTML; every piece of text is escaped."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            head, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                       + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
        elif line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")) + 1)  # under the page's own <h2> sections
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(f"<li>{html.escape(lines[i].strip()[2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif line:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(("|", "- ")):
                para.append(html.escape(lines[i].strip()))
                i += 1
            out.append("<p>" + "<br>".join(para) + "</p>")
        else:
            i += 1
    return "\n".join(out)


# ---------------------------------------------------------------------------- pieces
def _img(path: Path, alt: str, cls: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    kind = "png" if path.suffix.lower() == ".png" else "jpeg"
    attr = f' class="{cls}"' if cls else ""
    return f'<img{attr} alt="{html.escape(alt)}" src="data:image/{kind};base64,{data}">'


def _number(value: float) -> str:
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return "n/a" if math.isnan(value) else f"{value:.4g}" if abs(value) < 10 else f"{value:.2f}"


def _ordered(seen: Sequence[str], preferred: Sequence[str]) -> list[str]:
    return [x for x in preferred if x in seen] + [x for x in dict.fromkeys(seen) if x not in preferred]


def _run_info(records: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any]) -> str:
    finished = [r["finished"] for r in records if isinstance(r.get("finished"), (int, float))]

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))

    datasets = manifest.get("datasets", {})
    rows = [
        ("report written", when(time.time())),
        ("jobs finished", f"{when(min(finished))} – {when(max(finished))}" if finished else "n/a"),
        ("device", "; ".join(sorted({str(r["device"]) for r in records if r.get("device")})) or "n/a"),
        ("methods", ", ".join(_ordered([r["method"] for r in records], manifest.get("methods", [])))),
        ("models", ", ".join(f"{k} ({v})" if k != v else k for k, v in manifest.get("models", {}).items())
         or ", ".join(dict.fromkeys(r["model"] for r in records))),
        ("datasets", "; ".join(str(d.get("summary", k)) for k, d in datasets.items())
         or ", ".join(dict.fromkeys(r["dataset"] for r in records))),
        ("seeds", ", ".join(str(s) for s in manifest.get("seeds", []))),
        ("metrics", ", ".join(manifest.get("metric_order", manifest.get("metrics", {})))),
        ("processes", str(manifest.get("world", "n/a"))),
        ("jobs", (f"{sum(r.get('status') == 'ok' for r in records)} ok, "
                  f"{sum(r.get('status') != 'ok' for r in records)} failed")),
    ]
    return '<dl class="info">' + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                         for k, v in rows) + "</dl>"


def _figure(out: Path, rel: str | None, title: str, lines: Sequence[str]) -> str:
    if rel is None or not (out / rel).is_file():
        caption = f"{title}: crop missing" + (f" ({rel})" if rel else "")
        return f'<figure><figcaption>{html.escape(caption)}</figcaption></figure>'
    caption = "<br>".join([f"<b>{html.escape(title)}</b>", *(html.escape(t) for t in lines)])
    return f"<figure>{_img(out / rel, title)}<figcaption>{caption}</figcaption></figure>"


def _crop_rows(out: Path, records: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any]) -> str:
    """Per (dataset, item, model) and kept crop: bicubic, unadapted, each method and seed, HR."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("crops")]
    if not ok:
        return '<p class="note">No crops were kept (run_bench(keep_crops=N) or ttasr bench --crops N).</p>'
    methods = _ordered([r["method"] for r in ok], manifest.get("methods", []))
    models = _ordered([r["model"] for r in ok], list(manifest.get("models", {})))
    datasets = _ordered([r["dataset"] for r in ok], list(manifest.get("datasets", {})))
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for r in ok:
        groups.setdefault((r["dataset"], r["item"], r["model"]), []).append(r)

    def order(key: tuple[str, str, str]) -> tuple[int, int]:
        return datasets.index(key[0]), models.index(key[2])

    parts = []
    for key in sorted(groups, key=order):  # stable: items stay in key order
        dataset, item, model = key
        rows = sorted(groups[key], key=lambda r: (methods.index(r["method"]), r["seed"] is not None,
                                                  r["seed"] or 0))
        for n in range(max(len(r["crops"]) for r in rows)):
            first = next(r["crops"][n] for r in rows if len(r["crops"]) > n)
            y, x, h, w = first["box"]
            figures = [_figure(out, first.get("bicubic"), "bicubic LR",
                               _psnr_line(first, "bicubic"))]
            for r in rows:
                if len(r["crops"]) <= n:
                    continue
                crop = r["crops"][n]
                title = r["method"] if r["seed"] is None else f"{r['method']} (seed {r['seed']})"
                image = " · ".join(f"{m} {_number(v)}" for m, v in r["metrics"].items())
                figures.append(_figure(out, crop.get("sr"), title,
                                       [*_psnr_line(crop, "sr"), *([f"image: {image}"] if image else [])]))
            if first.get("hr"):
                figures.append(_figure(out, first["hr"], "HR", ["reference"]))
            where = f"{dataset} / {item} / {model}, crop {n + 1} at (y {y}, x {x}), {h}×{w} px"
            parts.append(f"<h3>{html.escape(where)}</h3><div class=\"crops\">{''.join(figures)}</div>")
    return "\n".join(parts)


def _psnr_line(crop: Mapping[str, Any], view: str) -> list[str]:
    value = crop.get("psnr_y", {}).get(view)
    return [] if value is None else [f"crop PSNR-Y {_number(float(value))} dB"]


# ---------------------------------------------------------------------------- the page
def write_report(out_dir: str | os.PathLike[str], title: str = "ttasr benchmark") -> Path:
    """Write ``out_dir/report.html`` (see the module docstring) and return its path.

    The tables come from ``results.md``, ``per_image.md`` and ``timing.md``, written by
    :func:`~ttasr.bench.write_tables` first when absent; the plots are the ``curves.png``
    and ``gain-*.png`` found in ``out_dir``.
    """
    out = Path(out_dir)
    records = merge_results(out)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8")) if (out / MANIFEST).is_file() else {}
    if not (out / "results.md").is_file() or not (out / "timing.md").is_file():
        from .tables import write_tables

        write_tables(out)
    plots = [p for p in [out / "curves.png", *sorted(out.glob("gain-*.png"))] if p.is_file()]
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Run</h2>", _run_info(records, manifest),
        "<h2>Results</h2>", markdown_to_html((out / "results.md").read_text(encoding="utf-8")),
        *(["<h2>Per image</h2>", markdown_to_html((out / "per_image.md").read_text(encoding="utf-8"))]
          if (out / "per_image.md").is_file() else []),
        "<h2>Timing</h2>", markdown_to_html((out / "timing.md").read_text(encoding="utf-8")),
        "<h2>Plots</h2>",
        "\n".join(f"<p>{_img(p, p.stem, 'plot')}</p>" for p in plots)
        or '<p class="note">No plots (they need matplotlib).</p>',
        "<h2>Crops</h2>",
        (f'<p class="note">Bicubic-upsampled LR, the model without adaptation ({UNADAPTED}), each method '
         "and seed, and the HR reference, on the same window; shown at 192 px without smoothing.</p>"),
        _crop_rows(out, records, manifest),
    ]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head>\n"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = atomic_write_bytes(out / REPORT, page.encode("utf-8"))
    log.info("wrote %s", path)
    return path
