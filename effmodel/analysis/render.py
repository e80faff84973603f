"""The report's document model and its two renderers.

A report is a :class:`Document` of :class:`Section` s made of text, tables,
figures and preformatted blocks.  Every report section module contributes a
:class:`Contribution` (its sections and its lines for the summary);
:mod:`effmodel.analysis.report` lists them in order.  :func:`render_html`
writes one self-contained page (figures as base64 PNG data URIs, so it can
be mailed or archived alone), :func:`render_markdown` Markdown with the PNG
files beside it.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError

FORMATS = ("html", "md")

# --- document model ----------------------------------------------------------------


@dataclass
class Text:
    text: str


@dataclass
class Table:
    head: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    key: str
    png: bytes
    caption: str


@dataclass
class Pre:
    text: str
    summary: str = ""  # collapsed under this title in HTML when given


@dataclass
class Section:
    title: str
    blocks: list[Any] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]

    @property
    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]


@dataclass
class Contribution:
    """What one report section module adds: its sections, in order, and its
    lines for the summary (the first screen)."""

    sections: list[Section] = field(default_factory=list)
    summary_lines: list[str] = field(default_factory=list)


# --- renderers -----------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.82em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3} caption{caption-side:bottom;font-size:.9em;color:#555;text-align:left;padding-top:.3em}
pre{background:#f7f7f7;padding:.7em;overflow-x:auto;font-size:.8em;white-space:pre-wrap}
figure{margin:1em 0} figcaption{font-size:.88em;color:#444} img{max-width:100%}
"""

# Marks the body once the page has loaded: data-images-status="ok" only if
# every image decoded (naturalWidth > 0).  Used by the headless-browser test.
_IMG_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-total', String(imgs.length));
  document.body.setAttribute('data-images-ok', String(ok));
  document.body.setAttribute('data-images-status', ok === imgs.length ? 'ok' : 'broken');
});
</script>"""


def render_html(doc: Document) -> str:
    """One self-contained HTML page; figures inline as base64 PNG."""
    e = html.escape
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">", f"<title>{e(doc.title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{e(doc.title)}</h1>", "<nav><ul>"]
    out += [f"<li><a href=\"#s{i}\">{e(s.title)}</a></li>" for i, s in enumerate(doc.sections)]
    out.append("</ul></nav>")
    for i, s in enumerate(doc.sections):
        out.append(f"<section id=\"s{i}\"><h2>{e(s.title)}</h2>")
        for b in s.blocks:
            if isinstance(b, Text):
                out.append(f"<p>{e(b.text)}</p>")
            elif isinstance(b, Table):
                out.append("<table>")
                if b.caption:
                    out.append(f"<caption>{e(b.caption)}</caption>")
                out.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.head) + "</tr></thead><tbody>")
                out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b.rows]
                out.append("</tbody></table>")
            elif isinstance(b, Figure):
                data = base64.b64encode(b.png).decode("ascii")
                out.append(f"<figure id=\"{e(b.key)}\"><img alt=\"{e(b.caption)}\" src=\"data:image/png;base64,{data}\">"
                           f"<figcaption>{e(b.caption)}</figcaption></figure>")
            elif isinstance(b, Pre):
                pre = f"<pre>{e(b.text)}</pre>"
                out.append(f"<details><summary>{e(b.summary)}</summary>{pre}</details>" if b.summary else pre)
        out.append("</section>")
    out += [_IMG_CHECK, "</body></html>"]
    return "\n".join(out)


def _md_cell(v: str) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Document, figure_dir: str) -> str:
    """Markdown; figures referenced as ``figure_dir/<key>.png``."""
    out = [f"# {doc.title}", ""]
    for s in doc.sections:
        out += [f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, Text):
                out += [b.text, ""]
            elif isinstance(b, Table):
                out.append("| " + " | ".join(_md_cell(h) for h in b.head) + " |")
                out.append("|" + "---|" * len(b.head))
                out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
                out += ([""] + [f"*{b.caption}*"] if b.caption else []) + [""]
            elif isinstance(b, Figure):
                out += [f"![{_md_cell(b.caption)}]({figure_dir}/{b.key}.png)", "", f"*{b.caption}*", ""]
            elif isinstance(b, Pre):
                fence = "~~~~" if "```" in b.text else "```"
                out += ([f"{b.summary}:", ""] if b.summary else []) + [fence, b.text, fence, ""]
    return "\n".join(out)


def write(doc: Document, output: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``report.html`` and/or ``report.md`` (+ ``report_files/``) to ``output``."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format: unknown {', '.join(bad) or '(empty)'} (use {', '.join(FORMATS)})")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def put(path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        written.append(path)

    if "html" in formats:
        put(out / "report.html", render_html(doc).encode("utf-8"))
    if "md" in formats:
        fig_dir = out / "report_files"
        fig_dir.mkdir(exist_ok=True)
        for f in doc.figures:
            put(fig_dir / f"{f.key}.png", f.png)
        put(out / "report.md", render_markdown(doc, "report_files").encode("utf-8"))
    return written
