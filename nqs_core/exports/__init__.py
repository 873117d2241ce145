"""Exports of a finished run for slides and papers (``nqs export``; the lab can call the same functions).

* :mod:`~nqs_core.exports.record`: read a saved run (the lab's JSON, ``nqs run --json`` output, a checkpoint);
* :mod:`~nqs_core.exports.figures`: the energy curve and the relative error as PNG / SVG at 1920×1080;
* :mod:`~nqs_core.exports.movie`: one Metropolis chain's trajectory as an animated GIF or an MP4;
* :mod:`~nqs_core.exports.report`: a one-page HTML report with the figures embedded.
"""

from nqs_core.exports.record import RunRecord, load_record, record_json

__all__ = ["RunRecord", "load_record", "record_json"]
