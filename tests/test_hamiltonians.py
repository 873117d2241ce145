"""The Hamiltonian kernels against dense matrices built independently from Kronecker products."""

import jax
import numpy as np
import pytest
import scipy.sparse as sp

from nqs_core.basis import basis_codes, decode, encode, sparse_matrix
from nqs_core.hamiltonians import make_hamiltonian
from nqs_core.lattice import make_lattice

# Basis state with code c has σ_i = +1 where bit i of c is set.  In the Kronecker product the
# first factor is the most significant index bit, so factor position p acts on site N-1-p.
SX = np.array([[0, 1], [1, 0]], dtype=float)
SY = np.array([[0, -1j], [1j, 0]])
# σᶻ on a site is +1 when the bit is 1: diag(-1, +1) in (bit 0, bit 1) order.
SZ = np.diag([-1.0, 1.0])


def op_on(site_ops: dict[int, np.ndarray], n: int) -> sp.csr_matrix:
    out = sp.identity(1, format="csr", dtype=complex)
    for pos in range(n):
        site = n - 1 - pos
        out = sp.kron(out, sp.csr_matrix(site_ops.get(site, np.eye(2))), format="csr")
    return out


def dense_reference(name, lattice, J=1.0, J2=0.0, h=0.0) -> np.ndarray:
    """H built term by term from Pauli matrices, with no code shared with nqs_core.hamiltonians."""
    n = lattice.n_sites
    H = sp.csr_matrix((2**n, 2**n), dtype=complex)
    if name == "tfim":
        for i, j in lattice.bonds:
            H = H - J * op_on({i: SZ, j: SZ}, n)
        for i in range(n):
            H = H - h * op_on({i: SX}, n)
    else:
        terms = [(lattice.bonds, J)] + ([(lattice.next_bonds, J2)] if name == "j1j2" else [])
        for bonds, c in terms:
            for i, j in bonds:
                for P in (SX, SY, SZ):
                    H = H + c * 0.25 * op_on({i: P, j: P}, n)
    H = H.toarray()
    assert np.allclose(H.imag, 0)
    return H.real


CASES = [
    ("heisenberg", "chain", 6, "periodic", {"J": 1.0}),
    ("heisenberg", "chain", 8, "open", {"J": 0.7}),
    ("j1j2", "chain", 10, "periodic", {"J1": 1.0, "J2": 0.45}),
    ("j1j2", "chain", 8, "open", {"J1": -0.8, "J2": 0.3}),
    ("tfim", "chain", 8, "periodic", {"J": 1.0, "h": 0.9}),
    ("tfim", "chain", 7, "open", {"J": 0.5, "h": 1.3}),
    ("heisenberg", "square", 2, "periodic", {"J": 1.0}),
    ("j1j2", "square", 3, "open", {"J1": 1.0, "J2": 0.5}),
    ("tfim", "square", 3, "periodic", {"J": 1.0, "h": 3.0}),
    ("j1j2", "square", 4, "periodic", {"J1": 1.0, "J2": 0.5}),
]


@pytest.mark.parametrize("name,kind,L,bc,couplings", CASES)
def test_connected_elements_match_dense_matrix_on_full_basis(name, kind, L, bc, couplings):
    lat = make_lattice(kind, L, bc)
    ham = make_hamiltonian(name, lat, **couplings)
    n = lat.n_sites
    if n > 12:
        # 4x4: check the kernel on a random subset of rows of the full space.
        codes = np.random.default_rng(0).choice(2**n, size=400, replace=False)
    else:
        codes = np.arange(2**n)
    ref = dense_reference(name, lat, J=ham.J, J2=ham.J2, h=ham.h) if n <= 12 else None
    diag, sigma_p, mels = (np.asarray(a) for a in ham.connected(decode(codes, n)))
    assert sigma_p.shape == (len(codes), ham.max_conn, n)
    rebuilt = _rows(codes, n, diag, sigma_p, mels)
    if ref is None:
        ref_rows = _rows_4x4(name, lat, ham, codes)
        np.testing.assert_allclose(rebuilt, ref_rows, atol=1e-12)
    else:
        np.testing.assert_allclose(rebuilt, ref[codes], atol=1e-12)


def _rows(codes, n, diag, sigma_p, mels) -> np.ndarray:
    """The rows ``codes`` of H rebuilt from the connected configurations and matrix elements."""
    rebuilt = np.zeros((len(codes), 2**n))
    rebuilt[np.arange(len(codes)), codes] += diag
    tgt = encode(sigma_p)
    for m in range(sigma_p.shape[1]):
        np.add.at(rebuilt, (np.arange(len(codes)), tgt[:, m]), mels[:, m])
    return rebuilt


@pytest.mark.parametrize("name,kind,L,couplings", [
    ("tfim", "chain", 8, [{"J": 1.0, "h": 0.9}, {"J": -0.4, "h": 0.0}, {"J": 0.0, "h": 2.5}]),
    ("j1j2", "chain", 10, [{"J1": 1.0, "J2": 0.45}, {"J1": 0.8, "J2": 0.0}, {"J1": -1.0, "J2": 1.2}]),
    ("heisenberg", "square", 2, [{"J": 1.0}, {"J": -0.6}]),
])
def test_runtime_couplings_give_the_dense_matrix_from_one_compiled_kernel(name, kind, L, couplings):
    """The engine's form: the structure (every coupling 1) with the couplings as traced arrays, one jit
    compilation for all of them, also where a coupling is 0 (J1-J2 at J2 = 0, the TFIM at h = 0)."""
    lat = make_lattice(kind, L)
    n, codes = lat.n_sites, np.arange(2**lat.n_sites)
    structure = make_hamiltonian(name, lat).structure()
    kernel = jax.jit(lambda sigma, g: structure.connected(sigma, g))
    for c in couplings:
        ham = make_hamiltonian(name, lat, **c)
        diag, sigma_p, mels = (np.asarray(a) for a in kernel(decode(codes, n), ham.runtime_couplings()))
        want = dense_reference(name, lat, J=ham.J, J2=ham.J2, h=ham.h)
        np.testing.assert_allclose(_rows(codes, n, diag, sigma_p, mels), want, atol=1e-12)
        want_scale = max([abs(v) for v in c.values()] + [0.0]) or 1.0  # the largest |coupling|, else 1
        assert float(structure.energy_scale(ham.runtime_couplings())) == float(ham.energy_scale()) == want_scale
    assert kernel._cache_size() == 1


def _rows_4x4(name, lat, ham, codes):
    """Rows of the 16-site Hamiltonian, built from Kronecker products applied to basis vectors."""
    n = lat.n_sites
    H = sp.csr_matrix((2**n, 2**n), dtype=complex)
    terms = [(lat.bonds, ham.J), (lat.next_bonds, ham.J2)]
    for bonds, c in terms:
        for i, j in bonds:
            for P in (SX, SY, SZ):
                H = H + c * 0.25 * op_on({i: P, j: P}, n)
    return H.tocsr()[codes].toarray().real


@pytest.mark.parametrize("name,kind,L,bc,couplings", [c for c in CASES if c[0] != "tfim" and c[2] ** (1 + (c[1] == "square")) in (4, 6, 8, 10)])
def test_sparse_matrix_in_sz_sector_is_the_dense_block(name, kind, L, bc, couplings):
    lat = make_lattice(kind, L, bc)
    ham = make_hamiltonian(name, lat, **couplings)
    codes = basis_codes(lat.n_sites, sz_zero=True)
    H = sparse_matrix(ham, codes).toarray()
    ref = dense_reference(name, lat, J=ham.J, J2=ham.J2, h=ham.h)
    np.testing.assert_allclose(H, ref[np.ix_(codes, codes)], atol=1e-12)
    np.testing.assert_allclose(H, H.T, atol=1e-14)


def test_tfim_sparse_matrix_on_full_space():
    lat = make_lattice("chain", 8)
    ham = make_hamiltonian("tfim", lat, J=1.0, h=0.7)
    np.testing.assert_allclose(sparse_matrix(ham).toarray(), dense_reference("tfim", lat, J=1.0, h=0.7), atol=1e-12)


def test_conventions_heisenberg_dimer_singlet_energy():
    # Two spins with one bond (open chain L=2): singlet energy −3/4 J in the S·S convention.
    ham = make_hamiltonian("heisenberg", make_lattice("chain", 2, "open"), J=1.0)
    assert np.linalg.eigvalsh(sparse_matrix(ham).toarray()).min() == pytest.approx(-0.75, abs=1e-14)


@pytest.mark.parametrize("bad", [dict(name="ising"), dict(J=float("nan")), dict(h=float("inf"))])
def test_invalid_settings_name_the_setting(bad):
    name = bad.pop("name", "tfim")
    with pytest.raises(ValueError) as err:
        make_hamiltonian(name, make_lattice("chain", 4), **bad)
    assert any(word in str(err.value) for word in ("hamiltonian", "J", "h"))


@pytest.mark.parametrize("name,kind,L,bc,couplings", [c for c in CASES if c[2] <= 10 and c[1] == "chain"])
def test_norm_bound_holds_for_the_whole_spectrum(name, kind, L, bc, couplings):
    """‖H‖ ≤ norm_bound (the engine stops a step whose |E| exceeds twice it): checked against every
    eigenvalue of the dense H; the bound is tight for one bond (S·S: −¾, σᶻσᶻ: ∓1)."""
    lat = make_lattice(kind, L, bc)
    ham = make_hamiltonian(name, lat, **couplings)
    eig = np.linalg.eigvalsh(dense_reference(name, lat, J=ham.J, J2=ham.J2, h=ham.h))
    assert max(abs(eig[0]), abs(eig[-1])) <= float(ham.norm_bound()) + 1e-12
    two = make_lattice("chain", 2, "open")
    ss = make_hamiltonian("heisenberg", two, J=0.7)
    assert float(ss.norm_bound()) == pytest.approx(abs(np.linalg.eigvalsh(dense_reference("heisenberg", two, J=0.7))).max())

