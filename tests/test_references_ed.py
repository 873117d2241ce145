"""Momentum-resolved exact diagonalisation against plain dense/sparse diagonalisation."""

import numpy as np
import pytest
import scipy.sparse.linalg as sla
from conftest import translation_matrix

from nqs_core import make_hamiltonian, make_lattice
from nqs_core.basis import basis_codes, decode, encode, sparse_matrix
from nqs_core.references.ed import ed_problem, exact_diagonalization, sector_codes


def lowest_per_momentum_sector(ham):
    """Brute force: for each k, the lowest eigenvalue of H restricted to the range of the projector
    P_k = (1/|T|) Σ_t e^{−ik·r_t} T_t, and that range's dimension."""
    lat = ham.lattice
    codes = basis_codes(lat.n_sites, ham.conserves_sz)
    H = sparse_matrix(ham, codes).toarray()
    # the permutation σ ↦ shift(σ, r_t) itself: (T ψ)(shift(σ, r_t)) = ψ(σ), the transpose of conftest's
    Ts = [translation_matrix(lat, codes, t).T for t in range(len(lat.displacements))]
    out = []
    for k in lat.momenta():
        P = sum(np.exp(-1j * r @ k) * T for r, T in zip(lat.displacements, Ts)) / len(Ts)
        dim = int(round(np.trace(P).real))  # rank of the projector
        if dim == 0:
            out.append((np.nan, 0))
            continue
        # P H P on the sector, the complement lifted far above the spectrum
        lifted = P @ H @ P + 1e3 * (np.eye(len(codes)) - P)
        out.append((float(np.linalg.eigvalsh((lifted + lifted.conj().T) / 2)[0]), dim))
    return out


@pytest.mark.parametrize("name,kind,L,kw", [
    ("heisenberg", "chain", 8, {}),
    ("j1j2", "chain", 10, {"J2": 0.3}),
    ("tfim", "chain", 7, {"h": 0.8}),
    ("tfim", "square", 3, {"h": 2.0}),
    ("heisenberg", "square", 2, {}),
])
def test_every_momentum_sector_matches_brute_force_projection(name, kind, L, kw):
    ham = make_hamiltonian(name, make_lattice(kind, L), **kw)
    res = exact_diagonalization(ham)
    assert len(res.sector_energies) == len(ham.lattice.momenta())
    for i, (e, dim) in enumerate(lowest_per_momentum_sector(ham)):
        assert res.block_dims[i] == dim
        if dim:
            assert res.sector_energies[i] == pytest.approx(e, abs=1e-10)
    assert res.block_dims.sum() == len(basis_codes(ham.lattice.n_sites, ham.conserves_sz))
    assert np.nanmin(res.sector_energies) == pytest.approx(res.energy, abs=1e-12)


@pytest.mark.parametrize("name,kind,L,bc,kw", [
    ("heisenberg", "square", 4, "periodic", {}),
    ("j1j2", "square", 4, "periodic", {"J2": 0.5}),
    ("tfim", "square", 4, "periodic", {"h": 3.0}),
    ("j1j2", "chain", 14, "periodic", {"J2": 0.37}),
    ("heisenberg", "chain", 12, "open", {}),
])
def test_ground_state_matches_plain_lanczos_and_is_an_eigenvector(name, kind, L, bc, kw):
    ham = make_hamiltonian(name, make_lattice(kind, L, bc), **kw)
    res = exact_diagonalization(ham)
    H = sparse_matrix(ham)
    plain = sla.eigsh(H, k=1, which="SA", v0=np.ones(H.shape[0]))[0][0]
    assert res.energy == pytest.approx(plain, abs=1e-10)
    assert np.min(res.sector_energies) == pytest.approx(plain, abs=1e-10)
    np.testing.assert_array_equal(res.codes, basis_codes(ham.lattice.n_sites, ham.conserves_sz))
    v = res.vector
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-12)
    assert np.linalg.norm(H @ v - res.energy * v) < 1e-9


@pytest.mark.parametrize("L", [6, 8, 10, 12, 14, 16])
def test_heisenberg_chain_ground_momentum(L):
    """N = 4n: k = 0; N = 4n+2: k = π (DESIGN.md §2); the vector carries that translation eigenvalue."""
    lat = make_lattice("chain", L)
    res = exact_diagonalization(make_hamiltonian("heisenberg", lat))
    expected = 0.0 if L % 4 == 0 else np.pi
    assert res.ground_momentum[0] == pytest.approx(expected)
    # ψ(shift(σ, e_x)) = e^{ik} ψ(σ) on the plain basis
    configs = decode(res.codes, L)
    shifted = np.searchsorted(res.codes, encode(configs[:, lat.unit_translations()[0]]))
    np.testing.assert_allclose(res.vector[shifted], np.exp(1j * expected).real * res.vector, atol=1e-12)


def test_square_4x4_ground_state_at_zero_momentum_with_marshall_sign():
    lat = make_lattice("square", 4)
    res = exact_diagonalization(make_hamiltonian("heisenberg", lat))
    assert np.allclose(res.ground_momentum, 0.0)
    assert res.energy == pytest.approx(-11.228483208428, abs=1e-9)
    configs = decode(res.codes, lat.n_sites)
    n_up_a = np.sum((configs == 1) & (lat.sublattice == 0)[None], axis=1)
    big = np.abs(res.vector) > 1e-8
    marshall = (-1.0) ** n_up_a
    signs = np.sign(res.vector[big]) * marshall[big]
    assert np.all(signs == signs[0])  # Marshall's theorem: one common sign


def test_sector_codes_equal_basis_codes():
    for n, sz in [(8, True), (9, False), (12, True)]:
        np.testing.assert_array_equal(sector_codes(n, sz), basis_codes(n, sz))


def test_ed_limits_name_the_setting():
    assert "24 sites" in ed_problem(make_hamiltonian("heisenberg", make_lattice("square", 6)))
    assert "basis states" in ed_problem(make_hamiltonian("heisenberg", make_lattice("chain", 24, "open")))
    assert ed_problem(make_hamiltonian("heisenberg", make_lattice("chain", 24))) is None
    with pytest.raises(ValueError, match="method=ed"):
        exact_diagonalization(make_hamiltonian("tfim", make_lattice("square", 5)))
