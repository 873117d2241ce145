"""Checkpoints: exact round trip of a state pytree, clear errors, and 20 + 20 steps == 40 steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from nqs_core.checkpoint import load_checkpoint, restore_state, save_checkpoint
from nqs_core.driver import run
from nqs_core.settings import RunSettings, SettingsError


def _state(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "params": {"w": jnp.asarray(rng.normal(size=(3, 4)) + 1j * rng.normal(size=(3, 4))),
                   "b": jnp.asarray(rng.normal(size=4).astype(np.float32))},
        "sampler": {"sigma": jnp.asarray(rng.choice([-1, 1], size=(5, 6)).astype(np.int8)),
                    "key": jax.random.key(seed)},
        "step": jnp.asarray(seed, jnp.int32),
    }


def test_round_trip_is_bit_exact_including_typed_keys(tmp_path):
    state = _state(3)
    path = save_checkpoint(tmp_path / "run.ckpt", state, {"seed": 3}, [{"step": 0, "energy": -1.5}], {"phase": "done"})
    ck = load_checkpoint(path)
    assert ck.settings == {"seed": 3} and ck.history == [{"step": 0, "energy": -1.5}] and ck.extra["phase"] == "done"
    back = restore_state(ck, _state(0))  # the template only gives the structure
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(back)):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the restored key draws the same numbers as the original
    assert jax.random.normal(back["sampler"]["key"]) == jax.random.normal(state["sampler"]["key"])
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_mismatched_structure_or_shape_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "run.ckpt", _state(1), {}, [])
    other = _state(1)
    other["params"]["w"] = jnp.zeros((3, 5), complex)
    with pytest.raises(ValueError, match=r"\['params'\]\['w'\].*shape"):
        restore_state(load_checkpoint(path), other)
    fewer = _state(1)
    del fewer["params"]["b"]
    with pytest.raises(ValueError, match="different model or optimizer"):
        restore_state(load_checkpoint(path), fewer)


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(ValueError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", meta=np.array('{"format": "something else"}'))
    with pytest.raises(ValueError, match="not an NQS Lab checkpoint"):
        load_checkpoint(tmp_path / "other.npz")


# the suite's TINY (tests/conftest.py; its compiled step comes from the cache) with SR's momentum on: the
# optimizer state then holds the momentum trace, which a resume must restore exactly
SMALL = RunSettings(**TINY, optimizer="sr", momentum=0.5, lr=0.02, eval_samples=0, seed=7)


def _params(result) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(result.state.params)]


def test_resume_20_plus_20_equals_40_straight(tmp_path):
    """Parameters, the optimizer's momentum trace, chains and PRNG key are restored exactly: the runs agree
    bit for bit."""
    straight = run(SMALL.replace(steps=40), reference=False)
    ck = tmp_path / "half.npz"
    first = run(SMALL.replace(steps=20), checkpoint=ck, reference=False)
    assert first.phase == "done" and load_checkpoint(ck).step == 20
    second = run(SMALL.replace(steps=40), checkpoint=ck, resume=ck, reference=False)
    assert second.phase == "done" and len(second.history) == 40
    assert [r.step for r in second.history] == list(range(40))
    e_straight = np.array([r.energy for r in straight.history])
    e_resumed = np.array([r.energy for r in second.history])
    np.testing.assert_array_equal(e_resumed, e_straight)
    for a, b in zip(_params(second), _params(straight)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(second.state.sampler.sigma), np.asarray(straight.state.sampler.sigma))
    assert load_checkpoint(ck).step == 40


def test_resume_refuses_other_settings(tmp_path):
    ck = tmp_path / "a.npz"
    run(SMALL.replace(steps=2), checkpoint=ck, reference=False)
    with pytest.raises(SettingsError, match="lr"):
        run(SMALL.replace(steps=4, lr=0.5), resume=ck, reference=False)
