"""``nqs export`` on a real finished run (a 6-site TFIM chain at h = J, 12 steps, with its checkpoint):
the figures are 1920×1080 PNGs that show the VMC curve and the reference line, and SVGs that parse as
XML on a 16:9 canvas; the report holds the energy figure, the final energy ± error, the V-score and the
reference with its provenance; the GIF and the MP4 have one frame per Metropolis sub-step (the MP4 at
the even size below an odd request, as H.264 needs), and the configurations decoded from their frames are
the chain's, each differing from the previous by exactly the accepted move (one flipped spin or none for
the TFIM's local moves).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import TINY, nqs_main
from PIL import Image

from nqs_core.driver import json_safe, run
from nqs_core.exports.figures import COLORS
from nqs_core.exports.movie import PALETTE, UP, DOWN, chain_trajectory, site_centres
from nqs_core.exports.record import load_record, record_json
from nqs_core.settings import RunSettings

# the suite's small run with the TFIM (its programs come from the compilation cache; test_app_views' movie strip
# runs the same)
SETTINGS = RunSettings(**{**TINY, "hamiltonian": "tfim"}, steps=12, eval_samples=0)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The run saved three ways: the lab's JSON, nqs run --json's lines, and its checkpoint."""
    folder = tmp_path_factory.mktemp("run")
    refs: list[dict] = []
    result = run(SETTINGS, callback=lambda e: refs.append(e.reference) if e.kind == "reference" else None,
                 checkpoint=folder / "run.npz")
    (folder / "run.json").write_text(record_json(SETTINGS, result.history, refs[-1], result.summary))
    lines = [json.dumps(json_safe(r.to_dict())) for r in result.history] + [json.dumps({"summary": json_safe(result.summary)})]
    (folder / "run.jsonl").write_text("\n".join(lines) + "\n")
    return {"json": folder / "run.json", "lines": folder / "run.jsonl", "npz": folder / "run.npz", "dir": folder}


def export(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, list[Path], str]:
    code, out, err = nqs_main(["export", *args, "--json"], capsys)
    return code, [Path(p) for p in json.loads(out)["files"]] if code == 0 else [], err


def has_colour(img: Image.Image, hex_colour: str, tol: int = 30) -> bool:
    rgb = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    want = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return bool(np.any(np.abs(rgb - want).sum(axis=1) < tol))


def test_figures_at_projector_resolution(saved_run, capsys):
    code, files, err = export(capsys, str(saved_run["json"]), "--png", "--svg", "--out", str(saved_run["dir"] / "figs"))
    assert code == 0, err
    assert sorted(p.name for p in files) == ["energy.png", "energy.svg", "relative_error.png", "relative_error.svg"]
    for png in (p for p in files if p.suffix == ".png"):
        with Image.open(png) as img:
            assert img.size == (1920, 1080)
            assert has_colour(img, COLORS["energy"])  # the VMC curve
            assert png.stem != "energy" or has_colour(img, COLORS["reference"])  # and the reference line
    for svg in (p for p in files if p.suffix == ".svg"):
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg")
        _, _, w, h = (float(x) for x in root.get("viewBox").split())
        assert w / h == pytest.approx(16 / 9)


def test_report_holds_the_energy_figure_and_the_numbers(saved_run, capsys):
    code, files, err = export(capsys, str(saved_run["json"]), "--report", "--out", str(saved_run["dir"] / "rep"))
    assert code == 0 and [p.name for p in files] == ["report.html"], err
    text = files[0].read_text()
    start = text.index('<figure id="energy-figure">')
    svg = text[text.index("<svg", start):text.index("</svg>", start) + len("</svg>")]
    assert ET.fromstring(svg).get("id") == "energy-svg"  # the energy figure, inline, well-formed
    summary = json.loads(saved_run["json"].read_text())["summary"]
    for needle in (f"{summary['final_energy']:.6f} ± {summary['final_error']:.6f}", "V-score", f"{summary['v_score']:.3e}",
                   "exact", "Pfeuty", "σˣ", "hamiltonian", "tfim"):
        assert needle in text, needle


def decode_frames(frames: list[np.ndarray], lattice) -> np.ndarray:
    """The newest configuration of every (H, W, 3) frame, read from the pixel colour at each site's
    centre (the nearer of the two spin colours: MP4 compression shifts colours a little)."""
    up, down = np.array(PALETTE[UP]), np.array(PALETTE[DOWN])
    out = []
    for t, rgb in enumerate(frames):
        size = (rgb.shape[1], rgb.shape[0])
        px = np.array([rgb[y, x] for x, y in site_centres(lattice, size, t + 1)]).astype(int)
        is_up = np.abs(px - up).sum(axis=1) < np.abs(px - down).sum(axis=1)
        out.append(np.where(is_up, 1, -1))
    return np.array(out, dtype=np.int8)


def gif_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a GIF as (H, W, 3) RGB."""
    out = []
    with Image.open(path) as img:
        for t in range(img.n_frames):
            img.seek(t)
            out.append(np.asarray(img.convert("RGB")))
    return out


def test_gif_frames_follow_one_chain_move_by_move(saved_run, capsys):
    code, files, err = export(capsys, str(saved_run["npz"]), "--gif", "--frames", "25", "--size", "640x360",
                              "--out", str(saved_run["dir"] / "movie"))
    assert code == 0 and [p.name for p in files] == ["metropolis.gif"], err
    frames = gif_frames(files[0])
    assert len(frames) == 25 and {f.shape for f in frames} == {(360, 640, 3)}
    record = load_record(saved_run["npz"])
    traj = chain_trajectory(record.settings, record.checkpoint, 25)  # the same chain, key and parameters
    assert np.array_equal(decode_frames(frames, traj.lattice), traj.configs[1:])
    flips = np.sum(np.diff(traj.configs.astype(int), axis=0) != 0, axis=1)
    assert set(flips) <= {0, 1} and flips.sum() > 0  # local moves: one spin per accepted step


def test_mp4_frames_follow_the_same_chain_at_an_even_size(saved_run, capsys):
    code, files, err = export(capsys, str(saved_run["npz"]), "--mp4", "--frames", "25", "--size", "641x361",
                              "--out", str(saved_run["dir"] / "mp4"))
    assert code == 0 and [p.name for p in files] == ["metropolis.mp4"], err
    assert files[0].read_bytes()[4:8] == b"ftyp"  # an MP4 container
    frames = list(iio.imiter(files[0]))  # decoded by imageio's ffmpeg plugin
    assert len(frames) == 25 and {f.shape for f in frames} == {(360, 640, 3)}  # 641x361 rounded down to even
    record = load_record(saved_run["npz"])
    traj = chain_trajectory(record.settings, record.checkpoint, 25)
    assert np.array_equal(decode_frames(frames, traj.lattice), traj.configs[1:])


def test_json_lines_record_and_refusals(saved_run, capsys, tmp_path):
    record = load_record(saved_run["lines"])
    assert record.kind == "json-lines" and record.settings is None and len(record.history) == SETTINGS.steps
    code, files, err = export(capsys, str(saved_run["lines"]), "--report", "--out", str(tmp_path / "r"))
    assert code == 0 and "settings" in files[0].read_text() and "not recorded" in files[0].read_text()
    bad = tmp_path / "bad.json"
    bad.write_text("not json at all {")
    for args, needle in (([str(saved_run["lines"]), "--gif"], "--gif needs the run's state"),
                         ([str(saved_run["lines"]), "--mp4"], "--mp4 needs the run's state"),
                         ([str(bad)], "neither JSON nor JSON lines"), ([str(tmp_path / "none.json")], "no run file")):
        code, _, err = export(capsys, *args, "--out", str(tmp_path / "x"))
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
