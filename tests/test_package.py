"""The package's import surface: lazy public names, and no JAX for ``tmepde --help``."""

import subprocess
import sys

import pytest

import tmepde


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return set(out.split())


def test_import_and_help_do_not_load_jax():
    assert "jax" not in _modules_after("import tmepde")
    assert "jax" not in _modules_after(
        "import contextlib, io\nfrom tmepde.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])")
    # ... while the first use of an engine name does
    assert "jax" in _modules_after("import tmepde\ntmepde.Simulator")


def test_result_files_are_read_and_written_without_jax():
    # io stores arrays computed elsewhere: reading a result, or writing one, loads no kernels
    assert "jax" not in _modules_after("import tmepde.io, tmepde.summaries")


@pytest.mark.parametrize("name", tmepde.__all__)
def test_every_public_name_resolves(name):
    assert getattr(tmepde, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Simulater'"):
        tmepde.Simulater  # noqa: B018


def test_python_m_cli_offers_every_command():
    # `python -m tmepde.cli` runs cli.py as __main__: the commands register with tmepde.cli
    out = subprocess.run([sys.executable, "-m", "tmepde.cli", "--help"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    listed = out.split("positional arguments:")[1].split()
    assert {"run", "info", "plot", "animate", "sweep", "sensitivity"} <= set(listed)


def test_package_data_globs_name_files_that_exist():
    # a package-data entry for a moved or deleted folder silently ships nothing
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, globs in data.items():
        base = root / package.replace(".", "/")
        for g in globs:
            assert any(p.is_file() for p in base.glob(g)), f"package-data {package}: {g} matches no file"
