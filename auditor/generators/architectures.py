"""Generator and discriminator architectures of the bundled generators.

DCGAN (Radford et al. 2016) at 32x32, chosen for throughput on one CPU thread: a
transposed-convolution generator with batch norm and a light three-layer discriminator. The
bundled weights use the original DCGAN discriminator (batch norm, non-saturating loss): a
spectrally normalized variant (Miyato et al. 2018) with a hinge loss was tried first and, this
small, stayed too weak to teach the generator within the CPU budget (see the model card). That
variant remains available (``d_norm="spectral"``); when shipped, its spectral normalization is
folded into the weights, so it loads as a plain module.

Generator contract (what the inversion relies on): ``forward(z)`` maps z of shape (N, z_dim),
drawn from a standard normal, to images of shape (N, 3, 32, 32) in [-1, 1] (``output_range``).
The discriminator maps such images to one realism logit per image (higher = more real); use it in
eval mode, where its batch norm uses stored statistics and scores do not depend on the batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class DCGANConfig:
    """Sizes of a 32x32 DCGAN; stored in ``card.json`` so that the weights can be rebuilt."""

    z_dim: int = 128
    ngf: int = 64  # generator width at 32x32 (x4 at 4x4)
    ndf: int = 64  # discriminator width at 16x16 (x4 at 4x4)
    image_size: int = 32
    channels: int = 3
    d_norm: str = "batch"  # "batch" (the original DCGAN's) or "spectral" (folded into the weights when shipped)

    def to_json(self) -> dict[str, Any]:
        return {"arch": "dcgan32", **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DCGANConfig":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class DCGANGenerator(nn.Module):
    """z (N, z_dim) ~ N(0, I) -> images (N, 3, 32, 32) in [-1, 1] (tanh output)."""

    output_range: tuple[float, float] = (-1.0, 1.0)

    def __init__(self, config: DCGANConfig = DCGANConfig()) -> None:
        super().__init__()
        if config.image_size != 32:
            raise ValueError("dcgan32 generates 32x32 images")
        self.config = config
        self.z_dim = config.z_dim
        self.image_shape = (config.channels, config.image_size, config.image_size)
        c4 = config.ngf * 4
        self.c4 = c4
        self.project = nn.Linear(config.z_dim, c4 * 4 * 4, bias=False)
        self.project_bn = nn.BatchNorm1d(c4 * 4 * 4)
        self.blocks = nn.Sequential(
            *self._up(c4, config.ngf * 2),  # 4 -> 8
            *self._up(config.ngf * 2, config.ngf),  # 8 -> 16
            *self._up(config.ngf, config.ngf // 2),  # 16 -> 32
            nn.Conv2d(config.ngf // 2, config.channels, 3, padding=1),
            nn.Tanh(),
        )

    @staticmethod
    def _up(cin: int, cout: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.project_bn(self.project(z.flatten(1))))
        return self.blocks(h.view(-1, self.c4, 4, 4))


class DCGANDiscriminator(nn.Module):
    """Images (N, 3, 32, 32) in [-1, 1] -> realism logits (N,); hinge-trained, higher = more real."""

    input_range: tuple[float, float] = (-1.0, 1.0)

    def __init__(self, config: DCGANConfig = DCGANConfig(), spectral_norm: bool = False) -> None:
        super().__init__()
        self.config = config
        d = config.ndf
        batch_norm = config.d_norm == "batch"

        def norm(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c)] if batch_norm else []

        layers: list[nn.Module] = [
            nn.Conv2d(config.channels, d, 4, stride=2, padding=1),  # 32 -> 16
            nn.LeakyReLU(0.2 if batch_norm else 0.1, True),
            nn.Conv2d(d, d * 2, 4, stride=2, padding=1, bias=not batch_norm),  # 16 -> 8
            *norm(d * 2),
            nn.LeakyReLU(0.2 if batch_norm else 0.1, True),
            nn.Conv2d(d * 2, d * 4, 4, stride=2, padding=1, bias=not batch_norm),  # 8 -> 4
            *norm(d * 4),
            nn.LeakyReLU(0.2 if batch_norm else 0.1, True),
        ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(d * 4 * 4 * 4, 1)
        if spectral_norm and not batch_norm:
            sn = nn.utils.parametrizations.spectral_norm
            for i, layer in enumerate(self.features):
                if isinstance(layer, nn.Conv2d):
                    self.features[i] = sn(layer)
            self.head = sn(self.head)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).flatten(1)).squeeze(1)


def folded_discriminator_state(disc: DCGANDiscriminator) -> dict[str, torch.Tensor]:
    """State dict of a spectrally normalized discriminator with W / sigma(W) folded into plain weights."""
    disc.eval()
    state: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, module in disc.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                state[f"{name}.weight"] = module.weight.detach().clone()  # parametrized: already W / sigma
                if module.bias is not None:
                    state[f"{name}.bias"] = module.bias.detach().clone()
            elif isinstance(module, nn.BatchNorm2d):
                for key, value in module.state_dict().items():
                    state[f"{name}.{key}"] = value.detach().clone()
    return state


ARCHITECTURES: dict[str, tuple[type[DCGANConfig], type[nn.Module], type[nn.Module]]] = {
    "dcgan32": (DCGANConfig, DCGANGenerator, DCGANDiscriminator),
}
