"""User-supplied generators: an ONNX file (converted to PyTorch by ``converters``) or TorchScript.

A user who has a better generator for their domain (faces, medical images, ...) plugs it in here
and it goes through the same adapter as the bundled one. What we need to know about it:

* ``z_dim``: read from the ONNX input shape or a TorchScript ``z_dim`` attribute, else given;
* the latent layout: (N, z_dim) or the classic DCGAN (N, z_dim, 1, 1), read from the input rank;
* ``output_range``: the generator's value range, (-1, 1) unless given (it cannot be read reliably).

The wrapped module always takes z of shape (N, z_dim) and returns NCHW images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from auditor.errors import AuditorError


class WrappedGenerator(nn.Module):
    """A user's generator behind the bundled generators' interface: z (N, z_dim) -> NCHW images."""

    def __init__(self, module: nn.Module, z_dim: int, latent_rank: int, output_range: tuple[float, float],
                 source: str) -> None:
        super().__init__()
        self.module = module
        self.z_dim = int(z_dim)
        self.latent_rank = latent_rank
        self.output_range = (float(output_range[0]), float(output_range[1]))
        self.source = source
        self.image_shape: tuple[int, int, int] = (0, 0, 0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.flatten(1)
        if self.latent_rank == 4:
            z = z.view(z.shape[0], self.z_dim, 1, 1)
        out = self.module(z)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.dim() == 3:  # (N, H, W): one channel
            out = out.unsqueeze(1)
        return out

    def probe(self) -> "WrappedGenerator":
        """Run two latents once: checks the module works and records its image shape."""
        with torch.no_grad():
            try:
                out = self(torch.zeros(2, self.z_dim))
            except Exception as exc:
                raise AuditorError(f"generator {self.source} fails on z of shape (2, {self.z_dim}): {exc}") from exc
        if out.dim() != 4 or out.shape[0] != 2 or out.shape[1] not in (1, 3):
            raise AuditorError(
                f"generator {self.source} must output images (N, 1|3, H, W); it gave shape {tuple(out.shape)}"
            )
        self.image_shape = tuple(int(v) for v in out.shape[1:])  # type: ignore[assignment]
        return self


def _onnx_latent_shape(model) -> tuple[int | None, int]:
    """(z_dim or None, rank) of the single graph input of an ONNX generator."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise AuditorError(f"a generator must have exactly one input (the latent z); this one has {len(inputs)}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) not in (2, 4) or (len(dims) == 4 and dims[2:] != [1, 1]):
        raise AuditorError(f"a generator's input must be (N, z_dim) or (N, z_dim, 1, 1); this one is {dims}")
    return dims[1], len(dims)


def load_onnx_generator(path: str | Path, z_dim: int | None = None,
                        output_range: tuple[float, float] = (-1.0, 1.0)) -> WrappedGenerator:
    """An ONNX generator as a differentiable PyTorch module (through ``converters``' ONNX -> torch path)."""
    import onnx

    from converters import convert_graph

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise AuditorError(f"{path} is not a readable ONNX file ({exc})") from exc
    found, rank = _onnx_latent_shape(model)
    if z_dim is not None and found is not None and z_dim != found:
        raise AuditorError(f"{path} takes z of size {found}, not {z_dim}")
    z_dim = z_dim or found
    if not z_dim:
        raise AuditorError(f"{path} has a dynamic latent size: pass --z-dim")
    module = convert_graph(model)
    module.requires_grad_(False)
    return WrappedGenerator(module, z_dim, rank, output_range, str(path)).eval().probe()


def load_torchscript_generator(path: str | Path, z_dim: int | None = None,
                               output_range: tuple[float, float] = (-1.0, 1.0)) -> WrappedGenerator:
    """A TorchScript generator (``torch.jit.save``); ``z_dim`` from its attribute when it has one."""
    path = Path(path)
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise AuditorError(f"{path} is not a TorchScript file ({exc})") from exc
    found = getattr(module, "z_dim", None)
    z_dim = z_dim or (int(found) if found is not None else None)
    if not z_dim:
        raise AuditorError(f"{path} has no z_dim attribute: pass --z-dim")
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return WrappedGenerator(module, z_dim, 2, output_range, str(path)).eval().probe()


def load_user_generator(path: str | Path, z_dim: int | None = None,
                        output_range: tuple[float, float] = (-1.0, 1.0)) -> WrappedGenerator:
    """Dispatch on the file suffix: ``.onnx`` or TorchScript (``.pt``/``.pth``/``.ts``/``.jit``)."""
    path = Path(path)
    if not path.is_file():
        raise AuditorError(f"generator file {path} does not exist")
    if path.suffix.lower() == ".onnx":
        return load_onnx_generator(path, z_dim, output_range)
    return load_torchscript_generator(path, z_dim, output_range)
