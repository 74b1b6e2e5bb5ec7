"""Generate the textbook law suite: ``python datasets/generate_textbook.py [--out DIR] [--laws a,b]``.

Each law is a well-known formula of physics or engineering with 2 to 9 variables, stated as a
SymPy-parsable string with its sampling ranges and a textbook reference. Every variable is drawn
independently and uniformly on its range with ``numpy.random.default_rng(seed)`` (the seed is the
CRC-32 of the law's name, so adding or reordering laws changes no other file); the target is the
formula evaluated exactly, **without noise** (benchmarks add their own). Files are written with
full float64 precision (``%.17g``) to ``datasets/textbook/<name>.csv`` (features, then the
target as the last column), and ``datasets/textbook/laws.json`` indexes every law.

``polynomial_in_raw_or_log`` is computed, not declared: a law counts as polynomial when its
formula is a polynomial in the variables, or when every variable range is positive and ``log y``
is a polynomial in the ``log x_i`` (a power law or a product of power laws). The others need
trigonometric, exponential, rational or nested structure that no Taylor polynomial of finite
order reproduces exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import sympy

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate as bundled_tables  # noqa: E402  (the bundled tables' writer)

OUT = HERE / "textbook"
ROWS = 2000


@dataclass(frozen=True)
class Law:
    """One textbook law: ``target = formula(variables)`` on a box of sampling ranges."""

    name: str
    target: str
    formula: str
    ranges: dict[str, tuple[float, float]]
    source: str

    @property
    def variables(self) -> list[str]:
        return list(self.ranges)

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())

    @cached_property
    def symbols(self) -> list[sympy.Symbol]:
        # positive symbols where the range is positive, so that SymPy may combine powers there
        return [sympy.Symbol(v, positive=True) if lo > 0 else sympy.Symbol(v, real=True)
                for v, (lo, _) in self.ranges.items()]

    @cached_property
    def expression(self) -> sympy.Expr:
        expr = sympy.sympify(self.formula, locals={s.name: s for s in self.symbols})
        unknown = expr.free_symbols - set(self.symbols)
        if unknown:
            raise ValueError(f"Law {self.name!r}: the formula uses {unknown} that have no sampling range")
        return expr

    @cached_property
    def polynomial_in_raw_or_log(self) -> bool:
        return is_polynomial_in_raw_or_log(self.expression, self.symbols, [lo for lo, _ in self.ranges.values()])

    def evaluate(self, X: np.ndarray) -> np.ndarray:
        """The law on the rows of ``X`` (columns in ``variables`` order), in float64."""
        f = sympy.lambdify(self.symbols, self.expression, "numpy")
        return np.broadcast_to(np.asarray(f(*np.asarray(X, dtype=np.float64).T), dtype=np.float64),
                               (len(X),)).copy()

    def sample(self, rows: int = ROWS, seed: int | None = None) -> pd.DataFrame:
        """``rows`` noise-free rows drawn uniformly on the ranges (default seed: the law's own)."""
        rng = np.random.default_rng(self.seed if seed is None else seed)
        lo = np.array([r[0] for r in self.ranges.values()])
        hi = np.array([r[1] for r in self.ranges.values()])
        X = lo + (hi - lo) * rng.random((rows, len(lo)))
        frame = pd.DataFrame(X, columns=self.variables)
        frame[self.target] = self.evaluate(X)
        return frame

    def index_entry(self) -> dict:
        return {"name": self.name, "target": self.target, "formula": self.formula, "variables": self.variables,
                "ranges": {v: list(r) for v, r in self.ranges.items()}, "source": self.source, "rows": ROWS,
                "seed": self.seed, "polynomial_in_raw_or_log": self.polynomial_in_raw_or_log}


def is_polynomial_in_raw_or_log(expr: sympy.Expr, symbols: list[sympy.Symbol], lows: list[float]) -> bool:
    """Polynomial in the variables, or (all ranges positive) ``log y`` polynomial in ``log x``."""
    if expr.is_polynomial(*symbols):
        return True
    if min(lows) <= 0:
        return False
    u = [sympy.Symbol(f"u_{s.name}", real=True) for s in symbols]
    logged = sympy.expand_log(sympy.log(expr.subs(dict(zip(symbols, (sympy.exp(v) for v in u))))), force=True)
    logged = sympy.expand(sympy.simplify(logged))
    # a constant log-prefactor such as log(4*pi) is fine; what remains must be polynomial in u
    return bool(logged.is_polynomial(*u))


def _law(name, target, formula, ranges, source) -> Law:
    return Law(name, target, formula, {k: (float(a), float(b)) for k, (a, b) in ranges.items()}, source)


LAWS: tuple[Law, ...] = (
    # --- mechanics
    _law("projectile_range", "R", "v0**2*sin(2*theta)/g", {"v0": (1, 20), "theta": (0.1, 1.4), "g": (1, 10)},
         "Halliday-Resnick-Walker, Fundamentals of Physics, ch. 4 (projectile range)"),
    _law("projectile_height", "y", "h0 + v0*t - g*t**2/2", {"h0": (0, 10), "v0": (1, 20), "t": (0, 3), "g": (1, 10)},
         "Halliday-Resnick-Walker ch. 2 (free fall)"),
    _law("kinetic_energy_rotation", "K", "m*v**2/2 + J*omega**2/2", {"m": (1, 5), "v": (1, 5), "J": (1, 5), "omega": (1, 5)},
         "Feynman Lectures I ch. 19 (kinetic energy of translation and rotation)"),
    _law("hollow_cylinder_inertia", "J", "m*(r1**2 + r2**2)/2", {"m": (1, 5), "r1": (0.5, 1), "r2": (1, 2)},
         "Halliday-Resnick-Walker ch. 10 (moment of inertia, annular cylinder)"),
    _law("work_3d", "W", "Fx*dx + Fy*dy + Fz*dz", {"Fx": (-5, 5), "Fy": (-5, 5), "Fz": (-5, 5), "dx": (-5, 5),
                                                   "dy": (-5, 5), "dz": (-5, 5)},
         "Feynman Lectures I.11.19 (dot product)"),
    _law("work_angle", "W", "F*d*cos(theta)", {"F": (1, 5), "d": (1, 5), "theta": (0, 1.4)},
         "Halliday-Resnick-Walker ch. 7 (work of a constant force)"),
    _law("inclined_plane", "a", "g*(sin(theta) - mu*cos(theta))", {"g": (1, 10), "theta": (0.5, 1.4), "mu": (0, 0.4)},
         "Halliday-Resnick-Walker ch. 6 (block on a rough incline)"),
    _law("elastic_collision", "v1f", "(m1 - m2)*v1/(m1 + m2)", {"m1": (1, 5), "m2": (1, 5), "v1": (1, 5)},
         "Halliday-Resnick-Walker ch. 9 (1D elastic collision)"),
    _law("center_of_mass", "x_cm", "(m1*x1 + m2*x2)/(m1 + m2)", {"m1": (1, 5), "m2": (1, 5), "x1": (-5, 5), "x2": (-5, 5)},
         "Feynman Lectures I.18.4 (centre of mass)"),
    _law("rocket", "dv", "ve*log(m0/mf)", {"ve": (1, 5), "m0": (5, 10), "mf": (1, 4)},
         "Halliday-Resnick-Walker ch. 9 (Tsiolkovsky rocket equation)"),
    _law("distance", "d", "sqrt((x2 - x1)**2 + (y2 - y1)**2)", {"x1": (3, 4), "x2": (1, 2), "y1": (3, 4), "y2": (1, 2)},
         "Feynman Lectures I.8.14 (distance)"),
    _law("gravity_3d", "F", "G*m1*m2/((x2 - x1)**2 + (y2 - y1)**2 + (z2 - z1)**2)",
         {"G": (1, 2), "m1": (1, 5), "m2": (1, 5), "x1": (3, 4), "x2": (1, 2), "y1": (3, 4), "y2": (1, 2),
          "z1": (3, 4), "z2": (1, 2)},
         "Feynman Lectures I.9.18 (gravitation between two points in space)"),
    _law("gravity_pe_difference", "U", "G*m1*m2*(1/r2 - 1/r1)", {"G": (1, 2), "m1": (1, 5), "m2": (1, 5), "r1": (3, 5), "r2": (1, 2)},
         "Feynman Lectures I.13.12 (work against gravity)"),
    _law("kepler_third", "T", "2*pi*sqrt(a**3/(G*M))", {"a": (1, 5), "G": (1, 2), "M": (1, 5)},
         "Halliday-Resnick-Walker ch. 13 (Kepler's third law)"),
    _law("escape_velocity", "v", "sqrt(2*G*M/r)", {"G": (1, 2), "M": (1, 5), "r": (1, 5)},
         "Halliday-Resnick-Walker ch. 13 (escape speed)"),
    _law("drag_force", "F", "rho*Cd*A*v**2/2", {"rho": (1, 2), "Cd": (0.5, 1.5), "A": (1, 5), "v": (1, 5)},
         "Halliday-Resnick-Walker ch. 6 (drag force)"),
    # --- oscillations and waves
    _law("pendulum_period", "T", "2*pi*sqrt(L/g)", {"L": (0.5, 2), "g": (1, 10)},
         "Halliday-Resnick-Walker ch. 15 (simple pendulum)"),
    _law("pendulum_large_amplitude", "T", "2*pi*sqrt(L/g)*(1 + theta0**2/16)", {"L": (0.5, 2), "g": (1, 10), "theta0": (0.1, 1.5)},
         "Taylor, Classical Mechanics ch. 4 (pendulum period, first large-amplitude correction)"),
    _law("damped_oscillator", "x", "A*exp(-b*t/(2*m))*cos(omega*t)",
         {"A": (1, 3), "b": (0.1, 1), "m": (1, 2), "omega": (1, 3), "t": (0, 5)},
         "Feynman Lectures I ch. 24 (transients: damped oscillation)"),
    _law("harmonic_motion", "x", "A*cos(omega*t + phi)", {"A": (1, 5), "omega": (1, 3), "t": (0, 3), "phi": (0, 1)},
         "Feynman Lectures I ch. 21 (harmonic oscillator)"),
    _law("traveling_wave", "y", "A*sin(k*x - omega*t)", {"A": (1, 3), "k": (1, 3), "x": (0, 2), "omega": (1, 3), "t": (0, 2)},
         "Halliday-Resnick-Walker ch. 16 (sinusoidal travelling wave)"),
    _law("sound_doppler", "f", "f0*(c + vr)/(c - vs)", {"f0": (100, 500), "c": (300, 350), "vr": (0, 30), "vs": (0, 30)},
         "Halliday-Resnick-Walker ch. 17 (Doppler effect for sound)"),
    _law("sound_level", "L", "10*log(intensity/I0, 10)", {"intensity": (1, 100), "I0": (0.01, 0.1)},
         "Halliday-Resnick-Walker ch. 17 (sound level in decibels)"),
    # --- relativity
    _law("relativistic_mass", "m", "m0/sqrt(1 - v**2/c**2)", {"m0": (1, 5), "v": (1, 2), "c": (3, 10)},
         "Feynman Lectures I.10.7 / ch. 15 (relativistic mass)"),
    _law("relativistic_kinetic", "K", "m*c**2*(1/sqrt(1 - v**2/c**2) - 1)", {"m": (1, 5), "v": (1, 2), "c": (3, 10)},
         "Feynman Lectures I ch. 15 (relativistic kinetic energy)"),
    _law("relativistic_doppler", "omega", "omega0*(1 + v/c)/sqrt(1 - v**2/c**2)", {"omega0": (1, 5), "v": (1, 2), "c": (3, 10)},
         "Feynman Lectures I.34.14 (relativistic Doppler effect)"),
    _law("velocity_addition", "u", "(v + w)/(1 + v*w/c**2)", {"v": (1, 5), "w": (1, 5), "c": (3, 10)},
         "Feynman Lectures I.16.6 (relativistic addition of velocities)"),
    _law("energy_momentum", "Etot", "sqrt(p**2*c**2 + m**2*c**4)", {"p": (1, 5), "c": (1, 3), "m": (1, 5)},
         "Feynman Lectures I ch. 16 (relativistic energy and momentum)"),
    # --- electricity and magnetism
    _law("coulomb", "F", "q1*q2/(4*pi*epsilon*r**2)", {"q1": (1, 5), "q2": (1, 5), "epsilon": (1, 5), "r": (1, 5)},
         "Feynman Lectures I.12.2 (Coulomb's law)"),
    _law("lorentz_force", "F", "q*(Ef + B*v*sin(theta))", {"q": (1, 5), "Ef": (1, 5), "B": (1, 5), "v": (1, 5), "theta": (0, 3)},
         "Feynman Lectures I.12.11 (Lorentz force)"),
    _law("rlc_impedance", "Z", "sqrt(R**2 + (omega*L - 1/(omega*C))**2)", {"R": (1, 5), "omega": (1, 5), "L": (1, 5), "C": (1, 5)},
         "Halliday-Resnick-Walker ch. 31 (series RLC impedance)"),
    _law("rc_charging", "Vc", "V0*(1 - exp(-t/(R*C)))", {"V0": (1, 5), "t": (0.1, 5), "R": (1, 5), "C": (0.5, 2)},
         "Halliday-Resnick-Walker ch. 27 (charging a capacitor)"),
    _law("loop_field_axis", "B", "mu0*current*R**2/(2*(R**2 + z**2)**(3/2))",
         {"mu0": (1, 2), "current": (1, 5), "R": (1, 3), "z": (0, 3)},
         "Griffiths, Introduction to Electrodynamics ch. 5 (field on the axis of a current loop)"),
    _law("langevin_paramagnet", "M", "n*mom*tanh(mom*B/(kB*T))", {"n": (1, 5), "mom": (1, 5), "B": (1, 5), "kB": (1, 5), "T": (1, 5)},
         "Feynman Lectures II.35.21 (paramagnetic magnetisation)"),
    _law("resistor_power", "P", "V**2/R", {"V": (1, 5), "R": (1, 5)},
         "Halliday-Resnick-Walker ch. 26 (power dissipated in a resistor)"),
    # --- optics
    _law("malus", "intensity", "I0*cos(theta)**2", {"I0": (1, 5), "theta": (0, 1.4)},
         "Hecht, Optics ch. 8 (Malus's law)"),
    _law("snell", "theta2", "asin(n1*sin(theta1)/n2)", {"n1": (1, 1.5), "n2": (1.5, 2.5), "theta1": (0.1, 1.5)},
         "Feynman Lectures I.26.2 (Snell's law of refraction)"),
    _law("brewster", "theta_b", "atan(n2/n1)", {"n1": (1, 2), "n2": (1, 2)},
         "Hecht, Optics ch. 4 (Brewster's angle)"),
    _law("thin_lens", "f", "d_obj*d_img/(d_obj + d_img)", {"d_obj": (1, 5), "d_img": (1, 5)},
         "Feynman Lectures I.27.6 (thin-lens equation)"),
    _law("multi_slit", "intensity", "I0*sin(n*phi/2)**2/sin(phi/2)**2", {"I0": (1, 5), "n": (1, 4), "phi": (0.3, 3)},
         "Feynman Lectures I.30.3 (N-slit interference)"),
    _law("two_source_interference", "intensity", "I1 + I2 + 2*sqrt(I1*I2)*cos(delta)", {"I1": (1, 5), "I2": (1, 5), "delta": (0, 3)},
         "Feynman Lectures I.37.4 (interference of two sources)"),
    _law("compton", "dlam", "h*(1 - cos(theta))/(m*c)", {"h": (1, 5), "m": (1, 5), "c": (1, 5), "theta": (0.5, 3)},
         "Tipler-Llewellyn, Modern Physics ch. 3 (Compton shift)"),
    # --- thermodynamics, statistical and chemical physics
    _law("ideal_gas", "p", "n*8.314*T/V", {"n": (1, 5), "T": (250, 400), "V": (1, 5)},
         "Feynman Lectures I.39.22 (ideal gas)"),
    _law("van_der_waals", "p", "n*8.314*T/(V - n*b) - a*n**2/V**2",
         {"n": (1, 2), "T": (250, 400), "V": (1, 5), "b": (0.01, 0.05), "a": (0.1, 0.5)},
         "Atkins, Physical Chemistry ch. 1 (van der Waals equation)"),
    _law("stefan_boltzmann", "P", "5.670e-8*A*T**4", {"A": (0.5, 2), "T": (300, 1000)},
         "Halliday-Resnick-Walker ch. 18 (Stefan-Boltzmann law)"),
    _law("heat_conduction", "heat", "k*A*dT*t/d", {"k": (1, 5), "A": (1, 5), "dT": (1, 5), "t": (1, 5), "d": (1, 5)},
         "Halliday-Resnick-Walker ch. 18 (conduction through a slab)"),
    _law("bernoulli", "p2", "p1 + rho*(v1**2 - v2**2)/2 + 9.81*rho*(h1 - h2)",
         {"p1": (100, 200), "rho": (1, 2), "v1": (0, 3), "v2": (0, 3), "h1": (0, 2), "h2": (0, 2)},
         "Feynman Lectures II ch. 40 (Bernoulli's theorem)"),
    _law("poiseuille", "flow", "pi*r**4*dp/(8*mu*L)", {"r": (0.5, 2), "dp": (1, 5), "mu": (1, 5), "L": (1, 5)},
         "Feynman Lectures II ch. 41 (Poiseuille flow)"),
    _law("arrhenius", "k", "A*exp(-Ea/(8.314*T))", {"A": (1, 5), "Ea": (5000, 20000), "T": (300, 600)},
         "Atkins, Physical Chemistry, chemical kinetics (Arrhenius equation)"),
    _law("barometric", "n_density", "n0*exp(-m*g*x/(kB*T))", {"n0": (1, 5), "m": (1, 2), "g": (1, 2), "x": (1, 2),
                                                             "kB": (1, 2), "T": (1, 2)},
         "Feynman Lectures I.40.1 (exponential atmosphere)"),
    _law("fermi_dirac", "occupancy", "1/(exp((Ee - mu)/(kB*T)) + 1)", {"Ee": (1, 5), "mu": (1, 5), "kB": (1, 2), "T": (1, 2)},
         "Kittel-Kroemer, Thermal Physics ch. 7 (Fermi-Dirac distribution)"),
    _law("planck", "u", "2*h*nu**3/(c**2*(exp(h*nu/(kB*T)) - 1))", {"h": (1, 2), "nu": (1, 5), "c": (1, 2), "kB": (1, 2), "T": (1, 5)},
         "Feynman Lectures I.41.16 (Planck's radiation law)"),
    _law("radioactive_decay", "count", "count0*exp(-lam*t)", {"count0": (1, 5), "lam": (0.1, 1), "t": (0, 5)},
         "Halliday-Resnick-Walker ch. 42 (radioactive decay)"),
    _law("isothermal_entropy", "dS", "n*8.314*log(V2/V1)", {"n": (1, 5), "V1": (1, 2), "V2": (3, 5)},
         "Atkins, Physical Chemistry ch. 3 (entropy of isothermal expansion)"),
    _law("nernst", "Ecell", "E0 - 8.314*T*log(Qr)/(z*96485)", {"E0": (0.5, 1.5), "T": (280, 350), "z": (1, 3), "Qr": (0.1, 10)},
         "Atkins, Physical Chemistry ch. 6 (Nernst equation)"),
    _law("gaussian", "f", "exp(-(x - mu)**2/(2*sigma**2))/(sqrt(2*pi)*sigma)", {"x": (-3, 3), "mu": (-1, 1), "sigma": (0.5, 2)},
         "Feynman Lectures I.6.20 (normal distribution)"),
    _law("rydberg", "wavenumber", "Ry*(1/n1**2 - 1/n2**2)", {"Ry": (1, 2), "n1": (1, 2), "n2": (3, 5)},
         "Tipler-Llewellyn, Modern Physics ch. 4 (Rydberg formula)"),
)

BY_NAME = {law.name: law for law in LAWS}


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically, as datasets/generate.py writes the bundled tables (same CSV format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bundled_tables.write(frame, path)


def write_index(laws, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump([law.index_entry() for law in laws], handle, indent=1)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate(out: Path = OUT, names: list[str] | None = None, quiet: bool = False) -> list[Law]:
    """Write the chosen laws' CSVs (default: all) and, for the full suite, ``laws.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [BY_NAME[n] for n in names] if names else list(LAWS)
    for law in chosen:
        frame = law.sample()
        if not np.all(np.isfinite(frame.to_numpy())):
            raise ValueError(f"generate: law {law.name!r} gives non-finite values on its ranges")
        write_csv(frame, out / f"{law.name}.csv")
        if not quiet:
            flag = "polynomial" if law.polynomial_in_raw_or_log else "non-polynomial"
            print(f"{law.name:26s} {len(law.variables)} vars  {flag:15s} {law.target} = {law.formula}")
    if not names:
        write_index(LAWS, out / "laws.json")
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT), help="output folder (default datasets/textbook)")
    parser.add_argument("--laws", default="", help="comma-separated law names (default: all, plus laws.json)")
    args = parser.parse_args(argv)
    laws = generate(Path(args.out), [n for n in args.laws.split(",") if n] or None)
    poly = sum(law.polynomial_in_raw_or_log for law in laws)
    print(f"{len(laws)} laws: {poly} polynomial in raw or log space, {len(laws) - poly} not")


if __name__ == "__main__":
    main()
