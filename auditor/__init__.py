"""auditor: find and remove backdoors in ONNX image classifiers without clean data."""

__version__ = "0.1.0"
