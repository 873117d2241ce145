"""The Metropolis movie: one chain's successive configurations, as an animated GIF (Pillow) or an
H.264 MP4 (imageio with the ffmpeg binary that the imageio-ffmpeg wheel ships; nothing is downloaded).

``chain_trajectory`` follows one chain of a run's sampler from its checkpointed configuration: the
engine's own sampler (``nqs_core.sampler.MetropolisSampler.sample``) with one chain, no thermalisation
and one Metropolis sub-step between recorded configurations, so consecutive configurations differ by
exactly the accepted move: nothing (rejected, or an exchange of equal spins), one flipped spin (local
moves, TFIM) or two exchanged opposite spins (Sᶻ-conserving moves).

``write_gif`` / ``write_mp4`` draw one frame per sub-step: on the square the L×L lattice (up ●, down ○ as two colours)
with the spins the move changed outlined; on a chain a space–time strip (sites downwards, time to the
right, the newest configuration in the last column, scrolling when the strip is full) with the changed
spins outlined in the newest column; a caption names the step and the move.  ``site_centres`` gives where each site of the newest
configuration is drawn (the tests decode the frames there).  H.264 in yuv420p needs even frame
sizes: ``write_mp4`` rounds an odd width or height down by one pixel (``even_size``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nqs_core.checkpoint import Checkpoint, restore_state
from nqs_core.lattice import Lattice
from nqs_core.sampler import MetropolisSampler, SamplerState
from nqs_core.settings import RunSettings

MAX_CELL = 72  # px: the largest cell of a chain's space-time strip
# palette indices: background, spin up, spin down, highlight, text, grid
PALETTE = [(255, 255, 255), (31, 95, 168), (242, 178, 51), (192, 57, 43), (20, 20, 20), (200, 200, 200)]
BG, UP, DOWN, MARK, TEXT, GRID = range(6)


@dataclass
class Trajectory:
    """Configurations (T+1, N) int8 of one chain (row 0: the start) and the lattice they live on."""

    configs: np.ndarray
    lattice: Lattice

    @property
    def steps(self) -> int:
        return len(self.configs) - 1

    def changed(self, t: int) -> np.ndarray:
        """Sites whose spin step t (1-based) changed: the accepted move."""
        return np.flatnonzero(self.configs[t] != self.configs[t - 1])


def chain_trajectory(settings: RunSettings, checkpoint: Checkpoint, steps: int, chain: int = 0) -> Trajectory:
    """``steps`` Metropolis sub-steps of chain ``chain`` from the checkpointed state (its parameters,
    configuration and PRNG key), with the run's own sampler (see the module docstring)."""
    from nqs_core.vmc import VMC  # local: the engine loads only when a movie is made

    vmc = VMC(settings)
    if not isinstance(vmc.sampler, MetropolisSampler):
        raise ValueError("the Metropolis movie needs sampler=metropolis (this run enumerates the basis exactly)")
    state = restore_state(checkpoint, vmc.init())
    if not 0 <= chain < settings.chains:
        raise ValueError(f"chain must be between 0 and {settings.chains - 1}; got {chain}")
    one = dataclasses.replace(vmc.sampler, n_chains=1, samples_per_chain=steps, sweep=1, thermalization=0)
    start = jnp.asarray(state.sampler.sigma)[chain][None]
    key = jax.random.fold_in(jnp.asarray(state.sampler.key), chain)

    @jax.jit
    def run(params: Any, sigma: jax.Array, key: jax.Array) -> jax.Array:
        _, configs, _, _ = one.sample(lambda x: vmc.model.apply(params, x), SamplerState(sigma, key), steps)
        return configs[0]

    configs = np.asarray(run(state.params, start, key), dtype=np.int8)
    return Trajectory(np.concatenate([np.asarray(start, dtype=np.int8), configs]), vmc.lattice)


def _geometry(lattice: Lattice, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(cell, x0, y0, window): cell size in px, the top-left corner of the drawing area under the caption,
    and the number of time columns of a chain's strip (1 on the square)."""
    w, h = size
    top, bottom, side = int(0.15 * h), int(0.1 * h), int(0.04 * w)
    avail_w, avail_h = w - 2 * side, h - top - bottom
    if lattice.dim == 1:  # sites down, time to the right
        cell = max(2, min(MAX_CELL, avail_h // lattice.L))
        window = max(2, avail_w // cell)
        return cell, side + (avail_w - window * cell) // 2, top + (avail_h - cell * lattice.L) // 2, window
    cell = max(2, min(avail_w, avail_h) // lattice.L)
    return cell, (w - cell * lattice.L) // 2, top + (avail_h - cell * lattice.L) // 2, 1


def site_centres(lattice: Lattice, size: tuple[int, int], t: int) -> np.ndarray:
    """(N, 2) pixel (x, y) of each site of the configuration at step t in frame t (on a chain the
    newest column of the strip, which scrolls once it is full)."""
    cell, x0, y0, window = _geometry(lattice, size)
    if lattice.dim == 1:
        col = min(t, window - 1)
        return np.stack([np.full(lattice.L, x0 + col * cell + cell // 2), y0 + np.arange(lattice.L) * cell + cell // 2], axis=1)
    x, y = lattice.coords[:, 0], lattice.coords[:, 1]
    return np.stack([x0 + x * cell + cell // 2, y0 + y * cell + cell // 2], axis=1)


def _draw_config(draw: ImageDraw.ImageDraw, centres: np.ndarray, config: np.ndarray, cell: int,
                 changed: np.ndarray) -> None:
    r = max(1, int(cell * 0.42))
    for i, (cx, cy) in enumerate(centres):
        draw.rectangle([cx - cell // 2, cy - cell // 2, cx + cell // 2 - 1, cy + cell // 2 - 1], outline=GRID)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=UP if config[i] > 0 else DOWN)
    for i in changed:
        cx, cy = centres[i]
        draw.rectangle([cx - cell // 2, cy - cell // 2, cx + cell // 2 - 1, cy + cell // 2 - 1], outline=MARK,
                       width=max(2, cell // 8))


def caption(traj: Trajectory, t: int) -> str:
    """``Metropolis step t/T: <the move>   ·   accepted so far a/t`` (t = 0: the start)."""
    sites = traj.changed(t) if t > 0 else np.array([], int)
    move = {0: "no change (rejected)" if t else "start", 1: f"flip of spin {sites[0] if len(sites) else ''}",
            2: f"exchange of spins {', '.join(str(s) for s in sites)}"}.get(len(sites), f"{len(sites)} spins changed")
    accepted = sum(len(traj.changed(k)) > 0 for k in range(1, t + 1))
    return f"Metropolis step {t}/{traj.steps}: {move}   ·   accepted so far {accepted}/{max(t, 1)}"


def frame(traj: Trajectory, t: int, size: tuple[int, int], fonts: tuple[Any, Any]) -> Image.Image:
    """Frame t (0 = the start) as a palette image (see the module docstring); fonts: caption, legend."""
    img = Image.new("P", size, BG)
    img.putpalette([c for rgb in PALETTE for c in rgb])
    draw = ImageDraw.Draw(img)
    draw.text((size[0] // 2, int(0.06 * size[1])), caption(traj, t), fill=TEXT, font=fonts[0], anchor="mm")
    legend = ("blue: up, yellow: down, red frame: changed by the accepted move"
              + ("; sites downwards, sub-steps to the right" if traj.lattice.dim == 1 else ""))
    draw.text((size[0] // 2, int(0.94 * size[1])), legend, fill=TEXT, font=fonts[1], anchor="mm")
    cell, _, _, window = _geometry(traj.lattice, size)
    lat = traj.lattice
    if lat.dim == 1:  # the strip: earlier columns left of the newest
        first = max(0, t - window + 1)
        for k in range(first, t + 1):
            centres = site_centres(lat, size, k - first)
            _draw_config(draw, centres, traj.configs[k], cell, traj.changed(k) if k == t and t > 0 else np.array([], int))
    else:
        _draw_config(draw, site_centres(lat, size, t), traj.configs[t], cell, traj.changed(t) if t else np.array([], int))
    return img


def frames(traj: Trajectory, size: tuple[int, int]) -> Iterator[Image.Image]:
    """The movie's frames, one per Metropolis sub-step (steps 1…T), drawn one at a time."""
    fonts = (ImageFont.load_default(size=max(10, size[1] // 30)), ImageFont.load_default(size=max(8, size[1] // 45)))
    return (frame(traj, t, size, fonts) for t in range(1, traj.steps + 1))


def write_gif(traj: Trajectory, path: str | Path, size: tuple[int, int] = (1920, 1080), ms_per_frame: int = 150) -> Path:
    """One frame per Metropolis sub-step (``traj.steps`` frames: steps 1…T), looping."""
    images = list(frames(traj, size))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0, disposal=1)
    return path


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    """The frame size H.264 in yuv420p can hold: width and height rounded down to even numbers."""
    return size[0] - size[0] % 2, size[1] - size[1] % 2


def write_mp4(traj: Trajectory, path: str | Path, size: tuple[int, int] = (1920, 1080), ms_per_frame: int = 150) -> Path:
    """The same frames as :func:`write_gif` as an H.264 (yuv420p) MP4 at ``even_size(size)``, one frame
    per ``ms_per_frame`` ms, encoded by imageio-ffmpeg's shipped binary."""
    import imageio.v2 as imageio

    # imageio-ffmpeg starts ffmpeg with preexec_fn=os.setpgrp unless told not to: Python code between
    # fork and exec, which can deadlock a multi-threaded process (JAX, a server); ffmpeg then only
    # shares the terminal's Ctrl-C
    os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")
    size = even_size(size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, format="FFMPEG", mode="I", fps=1000 / ms_per_frame, codec="libx264",
                            pixelformat="yuv420p", macro_block_size=1, ffmpeg_log_level="error",
                            output_params=["-movflags", "+faststart"]) as writer:
        for img in frames(traj, size):
            writer.append_data(np.asarray(img.convert("RGB")))
    return path
