"""The Python snippet of README.rst runs as it is written.

The README's snippet is a plain literal block (GitHub and PyPI show it; the data are the reader's),
so it is not a doctest: this test cuts it out of the README and runs it on random data of the shape
it expects. The same network, with its printouts, is a doctest on docs/net.rst.
"""
import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.rst')


def literal_block_after(text, intro):
    """The literal block that the paragraph ending in ``intro`` (``...::``) introduces, dedented."""
    start = text.index(intro) + len(intro)
    lines = []
    for line in text[start:].splitlines()[1:]:
        if line.strip() and not line.startswith(' '):
            break
        lines.append(line)
    block = '\n'.join(lines).strip('\n')
    indent = min(len(m) for m in re.findall(r'^( +)\S', block, re.M))
    return '\n'.join(line[indent:] for line in block.splitlines())


def test_readme_network_snippet_runs():
    with open(README, encoding='utf-8') as f:
        snippet = literal_block_after(f.read(), 'Use the network core directly::')
    assert 'MixedConvNN' in snippet and 'trainingStep' in snippet
    rng = np.random.default_rng(0)
    namespace = {'data': rng.random((50, 1, 26, 26), dtype=np.float32),   # the README's input shape and batch
                 'labels': rng.integers(0, 10, 50).astype(np.int16)}
    exec(compile(snippet, 'README.rst', 'exec'), namespace)
    assert np.isfinite(namespace['loss'])
    assert namespace['loss_instance'].shape == (50,)
    assert namespace['cnn'].input_depth == 1
