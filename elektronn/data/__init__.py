"""Embedded data that needs no download: :mod:`elektronn.data.synthetic`, a synthetic EM volume
with neuron-membrane labels for the 3D example."""
