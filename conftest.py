"""pytest configuration of the doctests: the examples in the docstrings of ``elektronn/`` and in the
pages of ``docs/`` (``--doctest-modules --doctest-glob='*.rst'`` in pyproject.toml).

The fixtures of the test suite are in ``tests/conftest.py``.
"""
import pytest

# Sphinx's configuration and extension (Sphinx is an optional package) and the built pages
collect_ignore = ['docs/conf.py', 'docs/_ext', 'docs/_build']


@pytest.fixture(autouse=True)
def _doctest_sandbox(request):
    """A doctest runs in an empty folder with an empty home (so ``~/neuro_data/`` on a page is a
    fresh folder), at the default log level, which shows the printouts the examples show."""
    if type(request.node).__name__ != 'DoctestItem':   # the test suite: nothing to do
        yield
        return
    tmp_path = request.getfixturevalue('tmp_path')
    monkeypatch = request.getfixturevalue('monkeypatch')
    (tmp_path / 'home').mkdir()
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.chdir(tmp_path)
    import elektronn
    import elektronn.net.convnet  # noqa: F401 -- its first import prints 'Load ELEKTRONN Core'; not in an example
    with elektronn.use_log_level('INFO'):
        yield
