"""genjax's tests: a package, so that 'tests.conftest' is this folder's even where another
distribution installs a top-level 'tests' package into site-packages (torch-fidelity 0.4.0 does)."""
