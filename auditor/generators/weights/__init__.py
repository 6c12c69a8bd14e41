"""Package data: the bundled generators' weights (``*.npz``, no pickle) and their model cards."""
