"""A camera's blur kernel from a photo of a printed chart: a pair whose HR is known.

Measuring the kernel needs registered (HR, LR) pairs (:mod:`~ttasr.pairs.calibration`), which
few users have. A printed chart gives one: a dark regular hexagon on a light ground, turned a
few degrees from the pixel grid like ISO 12233's slanted edges. Its HR is two grey levels and
six straight edges, so once the photo (the LR) has been fitted with that shape, the HR can be
drawn at any scale. The fit (:func:`fit_chart`) models each LR pixel as the two levels mixed
by a product of error functions, one across each edge, and places the edges to a small
fraction of an LR pixel: the slant samples each edge at every sub-pixel phase.
:func:`render_chart` draws the HR that the fitted edges describe, each HR pixel covering its
area of the polygon; :func:`calibrate_chart` hands the pairs to
:func:`~ttasr.pairs.calibrate_kernel`, which picks the kernel family (Gaussian or bicubic) and
models JPEG as for photographed pairs. Three edge directions fix all three parameters of an
anisotropic Gaussian; a square's two leave its width along the diagonals free.

The photo must show the whole polygon on its ground and nothing else dark (crop it); the
camera's settings (focus, zoom, ISO, JPEG quality, processing) must be those of the images to
adapt to, since the kernel belongs to them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..errors import InputError
from .calibration import JpegSettings, _luma, calibrate_kernel
from .estimation import KernelEstimate, _check_image

__all__ = ["ChartFit", "calibrate_chart", "chart_image", "fit_chart", "render_chart"]

log = logging.getLogger(__name__)

SUPERSAMPLE = 8  # points per HR pixel side when drawing the chart: an area coverage to 1/64


# --------------------------------------------------------------------------- the chart
def _polygon_edges(centre: tuple[float, float], apothem: float, angle: float,
                   sides: int) -> tuple[list[float], list[float]]:
    """Outward normal angles and offsets ``n·p = c`` of a regular polygon's edges (``p = (x, y)``)."""
    normals = [angle + k * 2 * math.pi / sides for k in range(sides)]
    offsets = [math.cos(a) * centre[0] + math.sin(a) * centre[1] + apothem for a in normals]
    return normals, offsets


def _coverage(height: int, width: int, normals: Sequence[float], offsets: Sequence[float],
              to_chart: tuple[float, float], supersample: int = SUPERSAMPLE) -> torch.Tensor:
    """Fraction of each pixel's area inside the polygon ``n_e·p < c_e`` (all ``e``), HxW.

    A pixel ``(row, col)``'s centre lies at chart coordinates ``(col * a + b, row * a + b)``
    with ``(a, b) = to_chart``; ``supersample²`` points per pixel are tested."""
    a, b = to_chart
    edges = [(math.cos(t), math.sin(t), c) for t, c in zip(normals, offsets)]
    xs = torch.arange(width, dtype=torch.float64) * a + b
    ys = torch.arange(height, dtype=torch.float64) * a + b
    cover = torch.zeros(height, width, dtype=torch.float64)
    steps = (torch.arange(supersample, dtype=torch.float64) + 0.5) / supersample - 0.5
    for dy in steps:
        y = (ys + dy * a)[:, None]
        for dx in steps:
            x = (xs + dx * a)[None, :]
            inside = torch.ones(height, width, dtype=torch.bool)
            for nx, ny, c in edges:
                inside &= nx * x + ny * y < c
            cover += inside
    return (cover / supersample**2).float()


def chart_image(size: int = 2048, *, sides: int = 6, angle_deg: float = 5.0, fill: float = 0.5,
                dark: float = 0.25, light: float = 0.75) -> torch.Tensor:
    """The chart to print, ``1x3xHxW``: a regular ``dark`` polygon of ``sides`` edges (its width
    across flats ``fill`` of the page), turned ``angle_deg`` degrees, on a ``light`` ground.

    Six sides give three edge directions, which fix an anisotropic Gaussian's three parameters
    (a square's two directions leave its diagonal width free). The default greys (3:1 as
    encoded, about 11:1 in linear light under a 2.2 gamma) keep the edges away from clipping
    and keep most of a camera's tone curve from reading as blur: a camera that blurs in linear
    light and then encodes makes an edge close to a blur of the encoded values only at a low
    contrast. A lower one reads the tone curve less but noise and JPEG more (benchmarks/RESULTS.md, *The
    kernel decides*)."""
    if sides < 3:
        raise InputError(f"sides must be 3 or more, got {sides}")
    if not 0 <= dark < light <= 1 or light - dark < 0.2:
        raise InputError(f"dark {dark} and light {light}: give 0 <= dark < light <= 1, at least 0.2 apart")
    if not 0 < fill <= 0.8:
        raise InputError(f"fill must be in (0, 0.8]: the polygon must lie inside the page, got {fill}")
    if not 1 <= abs(angle_deg) <= 20:
        raise InputError(f"angle_deg {angle_deg}: turn the polygon 1 to 20 degrees (5 is usual), so that "
                         "each edge crosses the pixel grid at every phase")
    centre = ((size - 1) / 2, (size - 1) / 2)
    normals, offsets = _polygon_edges(centre, fill * size / 2, math.radians(angle_deg), sides)
    cover = _coverage(size, size, normals, offsets, (1.0, 0.0))
    return (light + (dark - light) * cover).expand(1, 3, size, size).contiguous()


# --------------------------------------------------------------------------- the fit
@dataclass(frozen=True)
class ChartFit:
    """A slanted polygon found in an LR photo (coordinates in LR pixels, ``x`` right, ``y``
    down, pixel centres on integers).

    ``normals``/``offsets``: each edge's outward normal angle (rad) and ``n·p = c`` offset;
    ``inside``/``outside``: the polygon's and the ground's level per channel; ``widths``: the
    fitted error-function width across each edge (LR px; a first look at the blur, not the
    kernel: that comes from :func:`calibrate_chart`); ``rmse``: the fit's residual, 8-bit
    levels; ``box``: the ``(top, left, bottom, right)`` LR window that the pair uses."""

    normals: tuple[float, ...]
    offsets: tuple[float, ...]
    inside: tuple[float, ...]
    outside: tuple[float, ...]
    widths: tuple[float, ...]
    rmse: float
    box: tuple[int, int, int, int]

    @property
    def slant_deg(self) -> float:
        """How close an edge comes to the pixel grid, in degrees (0 to 45): the least slant."""
        return min(min(a % 90, 90 - a % 90) for a in map(math.degrees, self.normals))

    @property
    def width_across(self) -> float:
        """The polygon's width across flats (LR px): twice its mean apothem (a regular polygon's
        normals sum to zero, so the centre drops out of the offsets' mean)."""
        return 2 * sum(self.offsets) / len(self.offsets)

    def corners(self) -> list[tuple[float, float]]:
        """The polygon's corners ``(x, y)``, where consecutive edges meet."""
        out, n = [], len(self.normals)
        for e in range(n):
            (a1, c1), (a2, c2) = (self.normals[e], self.offsets[e]), (self.normals[(e + 1) % n], self.offsets[(e + 1) % n])
            det = math.cos(a1) * math.sin(a2) - math.sin(a1) * math.cos(a2)
            out.append(((c1 * math.sin(a2) - c2 * math.sin(a1)) / det, (math.cos(a1) * c2 - math.cos(a2) * c1) / det))
        return out


def _initial_polygon(y: torch.Tensor, sides: int, name: str) -> tuple[list[float], list[float]]:
    """Edges of the polygon from a threshold: its centroid and area, the edges' angle from the
    gradient directions (modulo ``360° / sides``)."""
    h, w = y.shape
    values = y.flatten()
    values = values[:: max(1, values.numel() // 1_000_000)]  # torch.quantile refuses 16M values
    lo, hi = torch.quantile(values.double(), torch.tensor([0.02, 0.98], dtype=torch.float64)).tolist()
    if hi - lo < 0.05:
        raise InputError(f"{name}: no chart found (its levels span {255 * (hi - lo):.1f} of 255); photograph "
                         "the chart of `ttasr chart` so that the whole polygon and some ground fill the frame")
    masks = (y < (lo + hi) / 2, y >= (lo + hi) / 2)
    border = torch.zeros(h, w, dtype=torch.bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    # the polygon is the side of the threshold that stays off the frame's border
    mask = min(masks, key=lambda m: float(m[border].float().mean()))
    if float(mask[border].float().mean()) > 0.01:
        raise InputError(f"{name}: both the polygon's grey and the ground's reach the frame's edge; crop the "
                         "photo to the chart's ground, with the whole polygon inside and nothing else")
    rows, cols = torch.nonzero(mask, as_tuple=True)
    centre = (float(cols.double().mean()), float(rows.double().mean()))
    gy, gx = torch.gradient(y.double())
    weight = gx.square() + gy.square()
    turn = torch.atan2(gy, gx) * sides  # all edges' normals agree modulo 360 / sides degrees
    angle = math.atan2(float((weight * turn.sin()).sum()), float((weight * turn.cos()).sum())) / sides
    apothem = math.sqrt(float(mask.sum()) / (sides * math.tan(math.pi / sides)))
    return _polygon_edges(centre, apothem, angle, sides)


def _profile(xs: torch.Tensor, ys: torch.Tensor, normals: torch.Tensor, offsets: torch.Tensor,
             widths: torch.Tensor) -> torch.Tensor:
    """How much of the polygon each pixel sees through a blur: ``prod_e Phi(d_e / w_e)``, with
    ``d_e`` the distance inside edge ``e``. Exact for a Gaussian blur away from the corners."""
    out = torch.ones_like(xs)
    for a, c, wd in zip(normals, offsets, widths):
        d = c - (a.cos() * xs + a.sin() * ys)
        out = out * 0.5 * (1 + torch.erf(d / (wd * math.sqrt(2))))
    return out


def fit_chart(lr: torch.Tensor, *, sides: int = 6, name: str = "chart", margin: int = 12,
              iterations: int = 80) -> ChartFit:
    """Find the slanted polygon of ``sides`` edges (:func:`chart_image`) in an LR photo of the
    chart (``1xCxHxW`` in [0, 1]).

    The edges are placed by least squares on the luma of the polygon's window, ``margin`` LR
    pixels around it, leaving out clipped pixels; each edge has its own angle, so a chart seen
    slightly off-axis still fits. Raises :class:`~ttasr.errors.InputError` naming ``name``
    when no polygon is found or it comes near the frame."""
    _check_image(lr, name)
    if sides < 3:
        raise InputError(f"sides must be 3 or more, got {sides}")
    y = _luma(lr.float())[0, 0]
    h, w = y.shape
    if min(h, w) < 32:
        raise InputError(f"{name}: {h}x{w} px is too small for a chart; the polygon should span 40 LR px or more")
    normals0, offsets0 = _initial_polygon(y, sides, name)
    start = ChartFit(tuple(normals0), tuple(offsets0), (0.0,), (0.0,), (1.0,) * sides, 0.0, (0, 0, h, w))
    across0 = start.width_across
    if across0 < 16:
        raise InputError(f"{name}: the polygon is about {across0:.0f} LR px across; fill more of the frame "
                         "with it (40 px or more)")
    xs_c, ys_c = zip(*start.corners())
    top, bottom = math.floor(min(ys_c)) - margin, math.ceil(max(ys_c)) + margin + 1
    left, right = math.floor(min(xs_c)) - margin, math.ceil(max(xs_c)) + margin + 1
    if top < 0 or left < 0 or bottom > h or right > w:
        raise InputError(f"{name}: the polygon (about {across0:.0f} px across) comes within {margin} px of the "
                         f"frame; photograph or crop the chart with ground all around it")
    top, left = top // 16 * 16, left // 16 * 16  # on JPEG's MCU grid, for the fit through JPEG
    window = y[top:bottom, left:right].double()
    ys, xs = torch.meshgrid(torch.arange(top, bottom, dtype=torch.float64),
                            torch.arange(left, right, dtype=torch.float64), indexing="ij")
    keep = (window > 0.5 / 255) & (window < 254.5 / 255)
    xs, ys, target = xs[keep], ys[keep], window[keep]
    seen = _profile(xs, ys, torch.tensor(normals0), torch.tensor(offsets0), torch.ones(sides, dtype=torch.float64))
    if float(keep.double().mean()) < 0.8 or int((seen > 0.99).sum()) < 16 or int((seen < 0.01).sum()) < 16:
        raise InputError(f"{name}: {100 * (1 - float(keep.double().mean())):.0f} % of the chart's pixels are "
                         "clipped (0 or 255); expose so that neither the polygon nor the ground clips")
    levels0 = [float(target[seen > 0.99].median()), float(target[seen < 0.01].median())]
    params = torch.tensor(normals0 + offsets0 + [0.0] * sides + levels0, dtype=torch.float64, requires_grad=True)

    def residual() -> torch.Tensor:
        a, c, logw = params[:sides], params[sides:2 * sides], params[2 * sides:3 * sides]
        vin, vout = params[-2], params[-1]
        return vout + (vin - vout) * _profile(xs, ys, a, c, logw.exp()) - target

    opt = torch.optim.LBFGS([params], lr=1, max_iter=iterations, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = residual().square().mean()
        loss.backward()
        return loss

    opt.step(closure)
    if not torch.isfinite(params).all():
        raise InputError(f"{name}: the polygon's edges could not be fitted (the fit diverged); is the whole "
                         f"{sides}-sided polygon (--sides) in the frame, on an even ground, and nothing else dark?")
    with torch.no_grad():
        rmse = float(residual().square().mean().sqrt()) * 255
        p = params.detach()
        a, c, widths = p[:sides], p[sides:2 * sides], p[2 * sides:3 * sides].exp()
        profile = _profile(xs, ys, a, c, widths)
        design = torch.stack([1 - profile, profile], 1)
        levels_in, levels_out = [], []
        for ch in range(lr.shape[1]):  # each channel's two levels, by least squares on the profile
            v = lr[0, ch, top:bottom, left:right].double()[keep]
            outside, inside = torch.linalg.lstsq(design, v[:, None]).solution[:, 0].tolist()
            levels_in.append(inside)
            levels_out.append(outside)
    fit = ChartFit(tuple(a.tolist()), tuple(c.tolist()), tuple(levels_in), tuple(levels_out),
                   tuple(widths.tolist()), rmse, (top, left, bottom, right))
    contrast = abs(float(p[-2] - p[-1]))
    # a regular polygon: consecutive normals 360/sides degrees apart (a chart seen a little
    # off-axis bends them by a few), the residual well under the contrast
    turns = [math.remainder(a - normals0[0] - k * 2 * math.pi / sides, 2 * math.pi) for k, a in enumerate(fit.normals)]
    if contrast < 0.03 or abs(fit.width_across - across0) > 0.2 * across0 \
            or max(fit.widths) > 0.25 * fit.width_across or max(map(abs, turns)) > math.radians(10) \
            or rmse > 0.1 * 255 * contrast:
        raise InputError(f"{name}: the polygon's edges could not be fitted (contrast {255 * contrast:.1f} levels, "
                         f"residual {rmse:.1f}, {fit.width_across:.1f} px across against {across0:.1f} from the "
                         f"threshold); is the whole {sides}-sided polygon (--sides) in the frame, seen square on, "
                         "on an even ground, and nothing else dark?")
    if fit.slant_deg < 1:
        log.warning("%s: an edge lies %.2f degrees from the pixel grid; turn the chart a few degrees so that "
                    "every edge crosses all sub-pixel phases (the kernel is less certain)", name, fit.slant_deg)
    log.info("%s: %d-sided polygon %.1f LR px across, least slant %.2f deg, edge widths %s LR px, fit RMSE "
             "%.2f levels", name, sides, fit.width_across, fit.slant_deg, "/".join(f"{v:.2f}" for v in fit.widths),
             rmse)
    return fit


def render_chart(fit: ChartFit, scale: int) -> torch.Tensor:
    """The HR (``1xCx(scale*h)x(scale*w)``) of the fitted chart over its window ``fit.box``:
    each HR pixel the levels mixed by the area it covers of the polygon. LR pixel ``i`` sits at
    the centre of HR block ``[scale*i, scale*i + scale)``, the convention of bicubic resizing
    and of :func:`~ttasr.degradations.kernels.alignment_shift`."""
    top, left, bottom, right = fit.box
    # HR pixel u's centre, in LR coordinates of the window: (u - (scale - 1) / 2) / scale + left
    offsets = [c - math.cos(a) * left - math.sin(a) * top for a, c in zip(fit.normals, fit.offsets)]
    cover = _coverage(scale * (bottom - top), scale * (right - left), fit.normals, offsets,
                      (1 / scale, -(scale - 1) / (2 * scale)))
    inside = torch.tensor(fit.inside, dtype=torch.float32)[:, None, None]
    outside = torch.tensor(fit.outside, dtype=torch.float32)[:, None, None]
    return (outside + (inside - outside) * cover)[None].clamp(0, 1)


def calibrate_chart(
    photos: Sequence[torch.Tensor],
    scale: int,
    *,
    sides: int = 6,
    jpeg: int | JpegSettings | Literal["auto"] | Sequence[Any] | None = "auto",
    names: Sequence[str] | None = None,
    crop_size: int | None = None,
    **calibration: Any,
) -> KernelEstimate:
    """A camera's kernel at ``scale`` from LR photos of the chart (:func:`chart_image`).

    Each photo is fitted (:func:`fit_chart`), its HR drawn (:func:`render_chart`), and the
    pairs go to :func:`~ttasr.pairs.calibrate_kernel` with ``jpeg`` (default ``"auto"``: read
    from the pixels) and LR crops of ``crop_size`` px (a multiple of 16; by default the
    window's smaller side, at most 256 px, so that one crop or four hold the whole polygon);
    other keywords pass through. The estimate's ``params`` add ``chart_widths`` (the fitted edge widths, LR
    px) and ``chart_rmse`` per photo."""
    if not photos:
        raise InputError("calibrate_chart needs at least one photo of the chart")
    labels = list(names) if names is not None else [f"chart {i + 1}" for i in range(len(photos))]
    pairs, fits = [], []
    for lr, label in zip(photos, labels):
        fit = fit_chart(lr, sides=sides, name=label)
        top, left, bottom, right = fit.box
        pairs.append((render_chart(fit, scale), lr[..., top:bottom, left:right].float()))
        fits.append(fit)
    if crop_size is None:
        crop_size = max(16, min(256, min(min(lr.shape[-2:]) for _, lr in pairs) // 16 * 16))
    estimate = calibrate_kernel(pairs, scale, jpeg=jpeg, names=labels, crop_size=crop_size,
                                **calibration)
    params = dict(estimate.params, estimator="chart", chart_widths=[list(f.widths) for f in fits],
                  chart_rmse=[f.rmse for f in fits])
    return KernelEstimate(estimate.kind, estimate.kernel, params)
