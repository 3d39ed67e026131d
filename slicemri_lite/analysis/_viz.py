"""Looking at volumes: orthogonal slices, slice montages and an interactive slice browser.

Display convention. A volume is ``(X, Y, Z)`` in the voxel order described in
`slicemri_lite.geometry` (X left <-> right, Y posterior -> anterior, Z inferior
-> superior). Each slice is turned so that, drawn with ``imshow`` (row 0 at
the top), the increasing in-plane axes point right and up:

==========  ==================  =====================  ======================
axis        panel shape         right is               up is
==========  ==================  =====================  ======================
sagittal    ``(Z, Y)``          +Y (anterior)          +Z (superior)
coronal     ``(Z, X)``          +X (R for RAS, L for   +Z (superior)
                                LAS)
axial       ``(Y, X)``          +X                     +Y (anterior)
==========  ==================  =====================  ======================

So anterior and superior are always up or right; which side is the patient's
left depends on the affine, and every plot here labels it from the affine.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from slicemri_lite._core.geometry import AXES, axis_index, orientation_codes, take_slice

__all__ = [
    "display_slice",
    "orthogonal_slices",
    "panel_axes",
    "panel_labels",
    "plot_orthogonal_slices",
    "plot_slices_grid",
    "SliceBrowser",
    "slice_browser",
]

# Which voxel axes run along a panel's columns (left -> right) and rows (bottom -> top).
_PANEL_AXES = {"sagittal": (1, 2), "coronal": (0, 2), "axial": (0, 1)}
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}


def _as_array(volume) -> tuple[np.ndarray, np.ndarray | None]:
    """``(X, Y, Z)`` data and the affine if ``volume`` is a nibabel image, else ``None``."""
    affine = None
    if hasattr(volume, "get_fdata") and hasattr(volume, "affine"):
        volume, affine = volume.get_fdata(dtype=np.float32), volume.affine
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(
            f"'volume' must be an (X, Y, Z) array or a 3D image; shape {volume.shape} was provided."
        )
    return volume, affine


def _check_axes(axes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(axes, str):
        axes = (axes,)
    for axis in axes:
        axis_index(axis)
    if not axes:
        raise ValueError(
            f"'axes' must name at least one of {list(AXES)}; {tuple(axes)!r} was provided."
        )
    return tuple(axes)


def _check_index(index, shape: Sequence[int]) -> tuple[int, int, int]:
    """A voxel ``(i, j, k)`` inside ``shape``; ``None`` means the centre voxel."""
    if index is None:
        return tuple(n // 2 for n in shape)
    index = tuple(int(v) for v in index)
    if len(index) != 3 or not all(0 <= v < n for v, n in zip(index, shape, strict=True)):
        raise ValueError(
            f"'index' must be a voxel (i, j, k) inside the grid {tuple(shape)}; {index} was provided."
        )
    return index


def display_slice(slice_2d: np.ndarray) -> np.ndarray:
    """Turn a voxel-order slice ``(A, B)`` into a display panel ``(B, A)``: +A right, +B up."""
    return np.rot90(np.asarray(slice_2d))


def orthogonal_slices(
    volume, index: Sequence[int] | None = None, axes: Sequence[str] = tuple(AXES)
) -> dict[str, np.ndarray]:
    """The slices through voxel ``index`` along each axis, oriented for display.

    Args:
        volume: ``(X, Y, Z)`` array or 3D nibabel image.
        index: voxel ``(i, j, k)`` the slices pass through; default the centre voxel.
        axes: which of "sagittal", "coronal", "axial" to return.

    Returns:
        ``{"sagittal": (Z, Y), "coronal": (Z, X), "axial": (Y, X)}`` panels (see the
        module docstring), restricted to ``axes``; views into ``volume``, not copies.
    """
    data, _ = _as_array(volume)
    index = _check_index(index, data.shape)
    return {a: display_slice(take_slice(data, a, index[axis_index(a)])) for a in _check_axes(axes)}


def panel_axes(axis: str) -> tuple[int, int]:
    """Voxel axes along a panel's columns (left -> right) and rows (bottom -> top)."""
    axis_index(axis)
    return _PANEL_AXES[axis]


def panel_labels(affine, axis: str) -> dict[str, str]:
    """Anatomical letters for the four edges of an ``axis`` panel, from the affine.

    Returns:
        ``{"left": ..., "right": ..., "bottom": ..., "top": ...}``, e.g. for a RAS
        coronal panel ``{"left": "L", "right": "R", "bottom": "I", "top": "S"}``.
    """
    codes = orientation_codes(affine)
    col, row = panel_axes(axis)
    return {
        "left": _OPPOSITE[codes[col]],
        "right": codes[col],
        "bottom": _OPPOSITE[codes[row]],
        "top": codes[row],
    }


def _voxel_sizes(affine, shape) -> np.ndarray:
    if affine is None:
        return np.ones(len(shape))
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))


def _intensity_range(data: np.ndarray, vmin, vmax) -> tuple[float, float]:
    """Colour limits shared by all panels; defaults: the minimum and the 99.5th percentile."""
    if vmin is None:
        vmin = float(np.min(data))
    if vmax is None:
        vmax = float(np.percentile(data, 99.5))
    return vmin, vmax


def _label_panel(ax, labels: dict[str, str]) -> None:
    style = {"color": "yellow", "fontsize": 10, "fontweight": "bold", "transform": ax.transAxes}
    ax.text(0.02, 0.5, labels["left"], ha="left", va="center", **style)
    ax.text(0.98, 0.5, labels["right"], ha="right", va="center", **style)
    ax.text(0.5, 0.02, labels["bottom"], ha="center", va="bottom", **style)
    ax.text(0.5, 0.98, labels["top"], ha="center", va="top", **style)


def _draw_panel(ax, panel, axis, index, shape, affine, crosshair, **imshow_kw):
    """Draw one display panel with optional crosshair and edge labels."""
    col, row = panel_axes(axis)
    sizes = _voxel_sizes(affine, shape)
    ax.imshow(panel, aspect=sizes[row] / sizes[col], **imshow_kw)
    if crosshair:  # the other two slices, in display coordinates (row 0 is the top)
        style = {"color": "tab:red", "lw": 0.8, "alpha": 0.7}
        ax.axvline(index[col], **style)
        ax.axhline(shape[row] - 1 - index[row], **style)
    if affine is not None:
        _label_panel(ax, panel_labels(affine, axis))
    ax.set_title(f"{axis} {index[axis_index(axis)]} / {shape[axis_index(axis)]}", fontsize=10)
    ax.set_axis_off()


def plot_orthogonal_slices(
    volume,
    index: Sequence[int] | None = None,
    affine=None,
    axes: Sequence[str] = tuple(AXES),
    crosshair: bool = True,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One figure with the slices through voxel ``index``, one panel per axis.

    Args:
        volume: ``(X, Y, Z)`` array or 3D nibabel image (its affine is used when
            ``affine`` is not given).
        index: voxel ``(i, j, k)``; default the centre voxel.
        affine: ``(4, 4)`` voxel -> world matrix; labels the panel edges (L/R, A/P, S/I)
            and sets the aspect ratio from the voxel sizes.
        crosshair: draw the other two slices' positions on each panel.

    Returns:
        A matplotlib figure that pyplot does not track: a notebook shows it as the
        cell's result; elsewhere call ``fig.savefig(path)``.
    """
    data, image_affine = _as_array(volume)
    affine = image_affine if affine is None else affine
    index, axes = _check_index(index, data.shape), _check_axes(axes)
    vmin, vmax = _intensity_range(data, vmin, vmax)
    fig = Figure(figsize=figsize or (3.2 * len(axes), 3.4))
    ax_list = fig.subplots(1, len(axes), squeeze=False)
    panels = orthogonal_slices(data, index, axes)
    for ax, axis in zip(ax_list[0], axes, strict=True):
        _draw_panel(
            ax,
            panels[axis],
            axis,
            index,
            data.shape,
            affine,
            crosshair,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
        )
    fig.set_facecolor("black")
    for ax in ax_list[0]:
        ax.title.set_color("white")
    fig.tight_layout()
    return fig


def plot_slices_grid(
    volume,
    axis: str,
    n_slices: int = 12,
    ncols: int = 6,
    affine=None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    panel_size: float = 1.6,
) -> Figure:
    """A montage of ``n_slices`` evenly spaced slices along one axis.

    Args:
        volume: ``(X, Y, Z)`` array or 3D nibabel image.
        axis: "sagittal", "coronal" or "axial".
        n_slices: how many slices to show, from the first to the last (all of them if
            the axis is shorter).
        ncols: panels per row.
        affine: labels each panel's edges; default the image's affine, if any.

    Returns:
        The matplotlib figure; each panel is titled with its slice index.
    """
    data, image_affine = _as_array(volume)
    affine = image_affine if affine is None else affine
    dim = axis_index(axis)
    if n_slices < 1 or ncols < 1:
        raise ValueError(
            f"'n_slices' and 'ncols' must be >= 1; {n_slices} and {ncols} were provided."
        )
    indices = np.unique(np.linspace(0, data.shape[dim] - 1, n_slices).round().astype(int))
    nrows = -(-len(indices) // ncols)
    fig = Figure(figsize=(panel_size * ncols, panel_size * nrows + 0.4))
    ax_grid = fig.subplots(nrows, ncols, squeeze=False)
    vmin, vmax = _intensity_range(data, vmin, vmax)
    col, row = panel_axes(axis)
    sizes = _voxel_sizes(affine, data.shape)
    for ax, idx in zip(ax_grid.flat, indices, strict=False):
        panel = display_slice(take_slice(data, axis, int(idx)))
        ax.imshow(panel, cmap=cmap, vmin=vmin, vmax=vmax, aspect=sizes[row] / sizes[col])
        ax.set_title(str(idx), fontsize=8, color="white", pad=2)
    for ax in ax_grid.flat:
        ax.set_axis_off()
    if affine is not None:
        _label_panel(ax_grid.flat[0], panel_labels(affine, axis))
    fig.suptitle(f"{len(indices)} of {data.shape[dim]} {axis} slices", color="white")
    fig.set_facecolor("black")
    return fig


def _figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, facecolor=fig.get_facecolor())
    return buffer.getvalue()


class SliceBrowser(widgets.VBox):
    """Interactive orthogonal slices: one slider per axis above the three panels.

    In a live kernel (Jupyter, Colab, Binder) moving a slider redraws the panels.
    Its display data also carries the first frame as ``image/png``, so saved
    notebooks and static pages that cannot run widgets still show a picture.

    Attributes:
        data: the ``(X, Y, Z)`` volume.
        affine: ``(4, 4)`` voxel -> world matrix, or ``None``.
        axes: the axes shown, e.g. ``("sagittal", "coronal", "axial")``.
        sliders: ``{axis: ipywidgets.IntSlider}`` over ``[0, n - 1]`` slices of that axis.
        image: the ``ipywidgets.Image`` holding the current frame as PNG.
    """

    def __init__(self, data, affine=None, axes=tuple(AXES), index=None, **plot_kw):
        super().__init__()
        self.data, self.affine, self.axes = data, affine, _check_axes(axes)
        self._index = list(_check_index(index, data.shape))
        vmin, vmax = _intensity_range(data, plot_kw.pop("vmin", None), plot_kw.pop("vmax", None))
        self._plot_kw = {**plot_kw, "vmin": vmin, "vmax": vmax}
        self.sliders = {axis: self._make_slider(axis) for axis in self.axes}
        self.image = widgets.Image(format="png")
        self.children = [widgets.HBox(list(self.sliders.values())), self.image]
        self.render()

    def _make_slider(self, axis: str) -> widgets.IntSlider:
        dim = axis_index(axis)
        slider = widgets.IntSlider(
            value=self._index[dim],
            min=0,
            max=self.data.shape[dim] - 1,
            description=axis,
            continuous_update=False,
            style={"description_width": "initial"},
        )
        slider.observe(lambda change: self._move(dim, change["new"]), names="value")
        return slider

    @property
    def index(self) -> tuple[int, int, int]:
        """The voxel ``(i, j, k)`` the shown slices pass through."""
        return tuple(self._index)

    def frame(self) -> dict[str, np.ndarray]:
        """The panels currently shown, as `orthogonal_slices` returns them."""
        return orthogonal_slices(self.data, self.index, self.axes)

    def _move(self, dim: int, value: int) -> None:
        self._index[dim] = int(value)
        self.render()

    def render(self) -> None:
        """Redraw the panels at the sliders' position into `image`."""
        fig = plot_orthogonal_slices(self.data, self.index, self.affine, self.axes, **self._plot_kw)
        self.image.value = _figure_png(fig)

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        return bundle


def slice_browser(
    volume,
    affine=None,
    axes: Sequence[str] = tuple(AXES),
    index: Sequence[int] | None = None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    figsize: tuple[float, float] | None = None,
) -> SliceBrowser:
    """An interactive slice browser with one slider per axis (a `SliceBrowser` widget).

    Args:
        volume: ``(X, Y, Z)`` array or 3D nibabel image (its affine is used when
            ``affine`` is not given).
        affine: ``(4, 4)`` voxel -> world matrix; labels panel edges (L/R, A/P, S/I).
        axes: which of "sagittal", "coronal", "axial" get a slider and a panel.
        index: starting voxel ``(i, j, k)``; default the centre voxel.
        cmap, vmin, vmax: colour map and limits shared by all frames (default:
            the volume's minimum and 99.5th percentile).

    Returns:
        The widget; make it a cell's result (or ``display`` it) to show it.
    """
    data, image_affine = _as_array(volume)
    affine = image_affine if affine is None else affine
    return SliceBrowser(data, affine, axes, index, cmap=cmap, vmin=vmin, vmax=vmax, figsize=figsize)
