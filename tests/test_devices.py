"""Chains sharded over devices: the helpers, and a real run on two CPU devices in a subprocess
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``) that reports ``devices: 2``, really splits
the chains, and gives the same statistics as one device to sampling noise.

Every comparison of a run on two devices with one uses ``SHARED`` (the suite's ``TINY``, evaluated as
test_driver's and test_cli_run's runs are): the one-device run is this process's and its programs are the
suite's; the two-device run is made once per test process (``two_devices``) and its programs (kept apart in
the cache, ``compile_cache.runtime_layout``) are those of test_cli_run's run in the users' default layout."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SUITE_XLA_FLAGS, TINY, TWO_CPU_DEVICES_XLA_FLAGS, nqs_main

from nqs_core.checkpoint import load_checkpoint
from nqs_core.devices import (
    CHAIN_AXIS,
    chain_mesh,
    distributed_requested,
    state_shardings,
    usable_device_count,
)


def test_usable_device_count_divides_the_chains():
    assert usable_device_count(16, 2) == 2
    assert usable_device_count(15, 2) == 1
    assert usable_device_count(6, 4) == 3
    assert usable_device_count(1, 8) == 1
    assert usable_device_count(16, 1) == 1


def test_only_per_chain_sampler_arrays_are_split():
    state = {"params": {"w": jnp.zeros((4, 8))}, "sampler": {"sigma": jnp.zeros((4, 6), jnp.int8),
                                                             "key": jax.random.key(0)}}
    mesh = chain_mesh(4)
    sh = state_shardings(state, 4, mesh)
    assert sh["sampler"]["sigma"].spec == jax.sharding.PartitionSpec(CHAIN_AXIS)
    assert sh["sampler"]["key"].spec == jax.sharding.PartitionSpec()
    assert sh["params"]["w"].spec == jax.sharding.PartitionSpec()  # leading dim 4 == chains, but not sampler


def test_distributed_is_opt_in(monkeypatch):
    monkeypatch.delenv("NQS_DISTRIBUTED", raising=False)
    assert not distributed_requested()
    monkeypatch.setenv("NQS_DISTRIBUTED", "1")
    assert distributed_requested()


SHARED = dict(TINY, steps=6, eval_samples=256, seed=3)  # one step per call: test_cli_run's and test_driver's programs
RUN = r"""
import json, sys
import jax
from nqs_core.driver import run
from nqs_core.settings import RunSettings
r = run(RunSettings(**json.loads(sys.argv[1])), reference=False, checkpoint=sys.argv[2])
sigma = r.state.sampler.sigma
print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(), "summary": r.summary,
                  "sigma_devices": len(sigma.sharding.device_set),
                  "sigma_shards": [list(x.data.shape) for x in sigma.addressable_shards],
                  "energies": [h.energy for h in r.history]}))
"""
DISTRIBUTED_VARS = ("NQS_DISTRIBUTED", "NQS_COORDINATOR_ADDRESS", "NQS_NUM_PROCESSES", "NQS_PROCESS_ID")


def _start(env: dict[str, str], checkpoint: Any) -> subprocess.Popen:
    """``RUN`` of ``SHARED`` in a new process with ``env``, writing ``checkpoint``."""
    return subprocess.Popen([sys.executable, "-c", RUN, json.dumps(SHARED), str(checkpoint)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``SHARED`` in one process on 2 CPU devices (writing its checkpoint, as the distributed run does)."""
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_VARS}
    env["XLA_FLAGS"] = TWO_CPU_DEVICES_XLA_FLAGS
    code, stdout, stderr = _finish(_start(env, tmp_path_factory.mktemp("two_devices") / "run.npz"))
    assert code == 0, stderr[-3000:]
    return _json_line(stdout)


def test_two_cpu_devices_split_the_chains_and_agree_with_one(two_devices: dict):
    from nqs_core.driver import run
    from nqs_core.settings import RunSettings

    two = two_devices
    one = run(RunSettings(**SHARED), reference=False)  # this process: one device (tests/conftest.py)
    chains, sites = SHARED["chains"], SHARED["L"]
    assert two["summary"]["devices"] == 2 and one.summary["devices"] == 1
    assert two["sigma_devices"] == 2 and two["sigma_shards"] == [[chains // 2, sites]] * 2
    sigma = one.state.sampler.sigma
    assert len(sigma.sharding.device_set) == 1
    assert [list(x.data.shape) for x in sigma.addressable_shards] == [[chains, sites]]
    e2, e1 = two["summary"]["final_energy"], one.summary["final_energy"]
    err = math.hypot(two["summary"]["final_error"], one.summary["final_error"])
    assert abs(e2 - e1) < 5 * err, (e2, e1, err)
    # the optimisation trajectories agree as well (same seed, same algorithm; only reduction order differs)
    energies = [h.energy for h in one.history]
    assert abs(np.mean(two["energies"][-3:]) - np.mean(energies[-3:])) < 0.1 * abs(e1) + 5 * err


def test_each_runtime_layout_has_its_own_compile_cache_folder(monkeypatch):
    from nqs_core.compile_cache import runtime_layout

    for var in ("XLA_FLAGS", "NQS_DISTRIBUTED"):
        monkeypatch.delenv(var, raising=False)
    assert runtime_layout() == ""
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=1")
    assert runtime_layout() == ""
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    assert runtime_layout() == "host-devices-4"
    monkeypatch.setenv("NQS_DISTRIBUTED", "1")
    assert runtime_layout() == "host-devices-4-distributed"
    monkeypatch.delenv("XLA_FLAGS")
    assert runtime_layout() == "distributed"


SAMPLER_HLO = r"""
import json, re, sys
import jax
from nqs_core.devices import chain_mesh, chain_sharding, replicated
from nqs_core.settings import RunSettings
from nqs_core.vmc import VMC
for ham in ("heisenberg", "tfim"):
    vmc = VMC(RunSettings(**{**json.loads(sys.argv[1]), "hamiltonian": ham}))
    st = vmc.init()
    mesh = chain_mesh(vmc.settings.chains)
    ss = st.sampler.replace(sigma=jax.device_put(st.sampler.sigma, chain_sharding(mesh)))
    params = jax.device_put(st.params, replicated(mesh))
    f = jax.jit(lambda p, s: vmc.sampler.sample(lambda x: vmc.model.apply(p, x), s))
    txt = f.lower(params, ss).compile().as_text()
    ops = re.findall(r"(all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter)(?:-start)?\(", txt)
    print(json.dumps({"hamiltonian": ham, "collectives": ops}))
"""


def test_sharded_sampler_loop_has_no_collectives():
    """With the chains split over 2 devices, the compiled Metropolis loop exchanges nothing between
    devices: the only collective is the one acceptance sum after the loop (a gather or reduce per
    sub-step made two devices 5x slower than one)."""
    env = dict(os.environ, XLA_FLAGS=TWO_CPU_DEVICES_XLA_FLAGS)
    out = subprocess.run([sys.executable, "-c", SAMPLER_HLO, json.dumps(TINY)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for line in out.stdout.strip().splitlines():
        d = json.loads(line)
        assert d["collectives"] == ["all-reduce"], d


# the smallest ConvNeXt on the J1-J2 4×4 (one block of 4 features): the sharding of its local energies is
# that of any size
# float64: the two runs differ only in the order of the sums (the ConvNeXt's default mixed precision would
# leave float32 rounding of ~1e-6 between them)
SPLIT_SETTINGS = dict(model="convnext", hamiltonian="j1j2", lattice="square", L=4, kernel=2, depth=1, features=4,
                      samples=32, chains=4, seed=5, dtype="float64")
ENGINE_SPLIT = r"""
import json, re, sys
from nqs_core.devices import split_cpu_into_cores
split_cpu_into_cores()  # NQS_CPU_DEVICES=2 from the test
import jax, jax.numpy as jnp
import numpy as np
from nqs_core.devices import chain_sharding
from nqs_core.local_energy import local_energies
from nqs_core.settings import RunSettings
from nqs_core.vmc import VMC
vmc = VMC(RunSettings(**json.loads(sys.argv[1])))
state, mesh = vmc.init(), vmc.engine.mesh
log_psi = jax.device_put(jnp.zeros(state.sampler.sigma.shape[0], jnp.complex128), chain_sharding(mesh))

def e_loc(p, s, lp):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        return local_energies(vmc.engine.forward, p, vmc.engine.hamiltonian, s, lp)

hlo = jax.jit(e_loc).lower(state.params, state.sampler.sigma, log_psi).compile().as_text()
state, stats = vmc.step(state, 2)
print(json.dumps({"devices": int(mesh.devices.size),
                  "sigma_shards": [list(x.data.shape) for x in state.sampler.sigma.addressable_shards],
                  "collectives": re.findall(r"(all-gather|all-reduce|collective-permute|all-to-all)(?:-start)?\(", hlo),
                  "energies": np.asarray(stats["energy"]).tolist()}))
"""


def test_the_engine_splits_its_samples_over_the_cpu_cores_and_takes_the_same_steps():
    """``NQS_CPU_DEVICES=2`` (the CLI's and the run workers' default on 2 cores: ``split_cpu_into_cores``): VMC.init
    places the chains on both devices, the compacted local energies run on each device's own samples (no
    collective: sharding propagation gathered every sample onto both devices, and the ConvNeXt step ran slower
    on 2 devices than on 1), and the ConvNeXt's steps equal this one-device process's up to the order of the
    sums.  (The RBM's flip-ratio path on 2 devices: the sweep test below.)"""
    from nqs_core.settings import RunSettings
    from nqs_core.vmc import VMC

    env = dict(os.environ, XLA_FLAGS=SUITE_XLA_FLAGS)  # no device count
    env["NQS_CPU_DEVICES"] = "2"
    out = subprocess.run([sys.executable, "-c", ENGINE_SPLIT, json.dumps(SPLIT_SETTINGS)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    two = json.loads(out.stdout.strip().splitlines()[-1])
    assert two["devices"] == 2 and two["sigma_shards"] == [[2, 16], [2, 16]]
    assert two["collectives"] == [], two
    vmc = VMC(RunSettings(**SPLIT_SETTINGS))
    assert vmc.engine.mesh.devices.size == 1  # this test process: one device (tests/conftest.py)
    _, stats = vmc.step(vmc.init(), 2)
    np.testing.assert_allclose(two["energies"], np.asarray(stats["energy"]), rtol=1e-9)


def _distributed_env(port: int, pid: int) -> dict[str, str]:
    """Process ``pid`` of 2 under ``NQS_DISTRIBUTED=1`` (one CPU device each), coordinator on ``port``."""
    env = dict(os.environ, XLA_FLAGS=SUITE_XLA_FLAGS)  # no device count
    env.update(NQS_DISTRIBUTED="1", NQS_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", NQS_NUM_PROCESSES="2",
               NQS_PROCESS_ID=str(pid))
    return env


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    """``(returncode, stdout, stderr)`` of ``proc`` (killed if it hangs)."""
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stdout, stderr


def _json_line(stdout: str) -> dict:
    """The JSON line ``RUN`` printed."""
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


# What the coordination service (in process 0) says when it saw no heartbeat from EVERY task for its
# timeout (100 s) although the test ran well under that: the machine's wall clock jumped (a suspended
# or migrated CI machine; the service times heartbeats by the wall clock).  Only that is retried.
HEARTBEATS_LOST = "stopped sending heartbeats"


def _run_pair(checkpoint: Any) -> list[dict]:
    """``RUN`` as processes 0 and 1 of one ``jax.distributed`` job; their JSON lines."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [_start(_distributed_env(port, pid), checkpoint) for pid in range(2)]
    results = [_finish(p) for p in procs]
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    return [_json_line(stdout) for _, stdout, _ in results]


@pytest.mark.slow
def test_two_processes_with_jax_distributed(two_devices: dict, tmp_path):
    """NQS_DISTRIBUTED=1: two processes on this machine (one CPU device each) form one 2-device mesh;
    both see the same run, only process 0 writes the (gathered) checkpoint, and the energies are those
    of ONE process running the same 2-device mesh (``two_devices``): the same sharded program, its
    all-reduces over CPU collectives instead of inside one process."""
    one = two_devices
    ck = tmp_path / "mp.npz"
    try:
        outs = _run_pair(ck)
    except AssertionError as failure:
        if HEARTBEATS_LOST not in str(failure):
            raise
        outs = _run_pair(ck)  # once more: see HEARTBEATS_LOST
    assert [o["process"] for o in outs] == [0, 1] and all(o["processes"] == 2 for o in outs)
    assert all(o["summary"]["devices"] == 2 for o in outs)
    assert outs[0]["energies"] == outs[1]["energies"]
    assert outs[0]["summary"]["final_energy"] == outs[1]["summary"]["final_energy"]
    assert one["processes"] == 1 and one["summary"]["devices"] == 2 and len(one["energies"]) == SHARED["steps"]
    np.testing.assert_allclose(outs[0]["energies"], one["energies"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(outs[0]["summary"]["final_energy"], one["summary"]["final_energy"], rtol=1e-12, atol=0)
    saved = load_checkpoint(ck)
    assert saved.step == SHARED["steps"] and saved.extra["devices"] == 2
    sigma = [a for a, info in zip(saved.leaves, saved.leaf_info) if "sigma" in info["path"]]
    assert len(sigma) == 1 and sigma[0].shape == (SHARED["chains"], SHARED["L"])  # both processes' chains gathered
    assert [o["sigma_shards"] for o in outs] == [[[SHARED["chains"] // 2, SHARED["L"]]]] * 2  # each its own half


def test_a_bad_cpu_device_count_is_refused_naming_the_variable():
    env = dict(os.environ, XLA_FLAGS=SUITE_XLA_FLAGS)  # no device count
    env["NQS_CPU_DEVICES"] = "two"
    out = subprocess.run([sys.executable, "-m", "nqs_core", "run", "--lattice", "chain", "--L", "6", "--steps", "2",
                          "--no-reference"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "NQS_CPU_DEVICES must be a whole number of devices ≥ 1; got 'two'" in out.stderr


def test_a_sweep_on_two_cpu_devices_equals_one_on_one(capsys):
    """``nqs sweep`` splits the CPU as ``nqs run`` does; every point's engine state starts on the mesh.  The
    one-device sweep is this process's, with test_sweep's settings (its compiled step and evaluation)."""
    from test_sweep import TFIM_FLAGS

    args = ["sweep", *TFIM_FLAGS, "--steps", "5", "--h", "0.5:1.5:2", "--json"]  # --steps: the last one counts
    env = dict(os.environ, XLA_FLAGS=SUITE_XLA_FLAGS)  # no device count
    env["NQS_CPU_DEVICES"] = "2"
    out = subprocess.run([sys.executable, "-m", "nqs_core", *args], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    code, stdout, stderr = nqs_main(args, capsys)  # this process: one device (tests/conftest.py)
    assert code == 0, stderr
    tables = {}
    for devices, text in ((2, out.stdout), (1, stdout)):
        sweep = json.loads(text.strip().splitlines()[-1])["sweep"]
        assert sweep["phase"] == "done" and sweep["settings"]["steps"] == 5 and len(sweep["table"]) == 2
        tables[devices] = [row["energy_per_site"] for row in sweep["table"]]
    np.testing.assert_allclose(tables[2], tables[1], rtol=1e-9)
