"""The photos front end, one module per part; :mod:`sklearn_ndde.faces` is
its public face."""
