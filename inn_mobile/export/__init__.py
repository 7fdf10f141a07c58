"""Lowering an :class:`~inn_mobile.integral.IntegralModel` to mobile runtimes, one graph per width bucket.

Each runtime module provides ``lower(model, bucket, example_input, *, int8=False, calibration=None)
-> list[image.Image]``: the runtime's files for that bucket with every weight-bearing byte range
recorded as a hole (see :mod:`inn_mobile.image`), so the bundle ships the nodes once and no weights.
"""
