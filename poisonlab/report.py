"""Self-contained HTML reports: headings, text, tables, matplotlib figures and image grids (PNG
embedded as base64, so a report is one file that opens anywhere)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from poisonlab.runs import write_text

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

# Tables scroll inside their box (display:block) and long cells wrap, so nothing is cut off at 1280 px;
# text cells align left, numbers right; figures shrink to the page width.
_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;overflow-wrap:break-word;min-width:3em}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
th{background:#f3f3f3;font-weight:600;overflow-wrap:normal}caption{caption-side:top;text-align:left;color:#555;padding:2px 0}
figure{margin:1em 0}figure img{max-width:100%;height:auto}figcaption{color:#555;font-size:90%}
.bad{color:#b00}.good{color:#070}code{background:#f5f5f5;padding:1px 3px}
"""
MISSING = "–"
# axis labels that name a count (their ticks must be whole numbers)
COUNT_LABELS = ("round", "iteration", "epoch", "step", "number of", "queries", "count")


class Report:
    """An HTML document built block by block."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.blocks.append(f"<p>{html.escape(text)}</p>")

    def table(self, rows: Sequence[dict[str, Any]], caption: str = "") -> None:
        if not rows:
            return
        cols = list(dict.fromkeys(k for r in rows for k in r))
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = "".join("<tr>" + "".join(_cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.blocks.append(f"<table>{cap}<tr>{head}</tr>{body}</table>")

    def figure(self, fig: "plt.Figure", caption: str = "") -> None:
        """Embed ``fig`` as PNG; axes labelled with a count (round, iteration, epoch, ...) get whole-number ticks."""
        import matplotlib.pyplot as plt

        for ax in fig.axes:
            for axis in ("x", "y"):
                label = getattr(ax, f"get_{axis}label")().lower()
                if any(word in label for word in COUNT_LABELS) and getattr(ax, f"get_{axis}scale")() == "linear":
                    integer_axis(ax, axis)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self._png(buf.getvalue(), caption)

    def image_grid(self, images: Sequence[np.ndarray], labels: Sequence[str], ncols: int = 8, caption: str = "") -> None:
        """Images as (H, W) grey or (H, W, 3) arrays, float in [0, 1] or uint8."""
        plt = pyplot()
        nrows = max(1, -(-len(images) // ncols))
        fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.5 * nrows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, img, label in zip(axes.flat, images, labels):
            ax.imshow(np.asarray(img), cmap="gray", vmin=0, vmax=255 if np.asarray(img).dtype == np.uint8 else 1)
            ax.set_title(label, fontsize=7)
        self.figure(fig, caption)

    def raw(self, fragment: str) -> None:
        """An HTML fragment the caller has escaped."""
        self.blocks.append(fragment)

    def _png(self, data: bytes, caption: str) -> None:
        b64 = base64.b64encode(data).decode("ascii")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.blocks.append(f'<figure><img src="data:image/png;base64,{b64}">{cap}</figure>')

    def html(self) -> str:
        body = "\n".join(self.blocks)
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n"
        )

    def save(self, path: Path) -> None:
        write_text(Path(path), self.html())


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, imported on first use (CLI start-up stays fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cell(v: Any) -> str:
    """A table cell: numbers right-aligned to 4 significant digits, missing values (None, NaN) as "–"."""
    if v is None or (isinstance(v, float) and v != v):
        return f'<td class="num">{MISSING}</td>'
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return f"<td>{html.escape(str(v))}</td>"
    text = f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
    return f'<td class="num">{text}</td>'


def integer_axis(ax: Any, axis: str = "x") -> None:
    """Whole-number ticks on a count axis (rounds, iterations, steps)."""
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))


_MARKERS = (("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."))


def series_style(k: int, n: int) -> dict[str, Any]:
    """Line style of the k-th of several series over ``n`` points: own marker and dash pattern, earlier
    series drawn wider, markers at staggered points, so that identical series stay distinguishable."""
    marker, dash = _MARKERS[k % len(_MARKERS)]
    step = max(1, n // 8)
    return {"marker": marker, "linestyle": dash, "linewidth": max(1.2, 3.2 - k), "markersize": 6,
            "markevery": (k * max(1, step // 3) % step, step), "alpha": 0.85, "zorder": 2 + k}
