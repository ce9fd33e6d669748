"""An E(3)-equivariant graph network for conformers: EGNN (Satorras et al. 2021, "E(n) Equivariant Graph Neural
Networks", eqs. 3-6), written small, as the denoiser of atom coordinates given the molecular graph (GeoDiff, Xu et
al. 2022; the layout of Hoogeboom et al. 2022's EDM).

    x (B, 3, A), c_noise (B,), cond = (atoms (B, A), bonds (B, A, A))  ->  EGNN  ->  (B, 3, A)

Notation (per molecule; i, j atoms; real = atoms > 0; the graph is GeoDiff's extended one: every pair of real
atoms i != j is an edge, whether bonded or not, so the net sees non-bonded distances too):
    h_i     node features: atom-type embedding + an MLP of the sinusoidal embedding of c_noise * emb_scale
    e_ij    edge features: bond-type embedding (0 none .. 4 aromatic) and the input's squared distance d0_ij^2
    m_ij    = phi_e(h_i, h_j, |x_i - x_j|^2, e_ij)                                       (eq. 3)
    x_i    <- x_i + 1/(n - 1) sum_j (x_i - x_j) / (|x_i - x_j| + 1) phi_x(m_ij)          (eq. 4)
    h_i    <- h_i + phi_h(h_i, 1/(n - 1) sum_j m_ij)                                      (eqs. 5-6)
    output  = x^L - x^0, minus its mean over the real atoms; 0 at padding atoms
n is the molecule's real atom count: both sums are means over the n - 1 neighbours, so molecules of 3 and of 30
atoms see updates of the same size. Dividing x_i - x_j by (|x_i - x_j| + 1) is EDM's normalisation (Hoogeboom et al.
2022, app. B): unnormalised, the update grows with the distance and diverges on noisy inputs. Every operation takes
coordinates only through differences and distances, so the output rotates and reflects with x (E(3)), ignores
translations, and permutes with the atoms; removing its mean keeps it in the same zero-mean subspace as the data
(`diffusekit.data.molecules` centres every conformer), which is where eps- and x0-predictions live. Padding atoms
send and receive nothing: their coordinates are replaced by 0 before use, so any values there (NaN included) change
nothing. Any float dtype works (float64 for exact equivariance tests).
Size (`EGNNConfig()`: width 64, 4 layers): 97,664 parameters. Forward + backward (fp32, 1 thread) on 64 training
molecules (A = 30, 21.8 real atoms on average): 0.25 s of CPU time, 0.38 s wall on the shared 2-core machine (load
~7); 2 threads were slower there. Width 96: 217,152 parameters, 0.41 s CPU; width 128: 383,744, 0.66 s CPU. The
cost is the (B, A, A, width) edge tensors: it grows as A^2 and width^2.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import SinusoidalEmbedding


@dataclass
class EGNNConfig:
    """Everything needed to rebuild an EGNN; saved as JSON beside the weights (`to_dict` / `from_dict`)."""

    num_atom_types: int = 6  # the atoms' index range including 0 = padding: H C N O F + padding
    num_bond_types: int = 5  # 0 none, 1 single, 2 double, 3 triple, 4 aromatic
    width: int = 64  # node and message features; the cost grows as width^2 (module docstring)
    layers: int = 4  # message-passing layers; 4 reach every atom 4 times over the complete graph
    emb_scale: float = 1.0  # c_noise multiplier before the sinusoids: 1 for timesteps 0..999, 250 for log(sigma)/4

    def __post_init__(self):
        if self.width % 2 or self.width < 2 or self.layers < 1:
            raise ValueError(f"EGNN needs an even width >= 2 and layers >= 1; got width={self.width}, "
                             f"layers={self.layers}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EGNNConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown EGNNConfig fields: {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, s: str) -> "EGNNConfig":
        return cls.from_dict(json.loads(s))


def mlp(c_in: int, c_out: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, width), nn.SiLU(), nn.Linear(width, c_out))


class EGNNLayer(nn.Module):
    """One EGNN layer (eqs. 3-6, module docstring): messages over all real pairs, a coordinate and a feature update."""

    def __init__(self, width: int, num_bond_types: int, update_h: bool = True):
        super().__init__()
        # phi_e's first linear map, split by input so that h is mapped per atom, not per pair:
        # W [h_i, h_j, d^2, d0^2, onehot(bond)] = W_i h_i + W_j h_j + W_e [d^2, d0^2, onehot(bond)]
        # (the bond as a one-hot through W_e, not an nn.Embedding: its backward over (B, A, A) is 5x slower)
        self.msg_i, self.msg_j = nn.Linear(width, width), nn.Linear(width, width, bias=False)
        self.msg_e = nn.Linear(2 + num_bond_types, width, bias=False)
        self.msg_out = nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU())
        # phi_x: one linear map of m_ij (itself the output of a 2-layer MLP). The paper's phi_x has a hidden layer;
        # on the (B, A, A) edges it would be a third of the layer's time (fwd+bwd, 64 molecules), for no gain here
        self.coord = nn.Linear(width, 1, bias=False)
        nn.init.xavier_uniform_(self.coord.weight, gain=1e-3)  # start near the identity, as the EGNN code does
        # the last layer's h would never be read (the output is the coordinates): it has no phi_h
        self.node = mlp(2 * width, width, width) if update_h else None

    def forward(self, h, pos, edge, pair, inv_n):
        # h (B, A, W), pos (B, A, 3), edge (B, A, A, 1 + bond types) = [d0^2, onehot(bond)] of the input,
        # pair (B, A, A) 1 on the graph's edges, inv_n (B, 1, 1) 1 / neighbours
        diff = pos[:, :, None] - pos[:, None]  # (B, A, A, 3) x_i - x_j
        d2 = diff.square().sum(-1, keepdim=True)  # (B, A, A, 1)
        m = self.msg_i(h)[:, :, None] + self.msg_j(h)[:, None] + self.msg_e(torch.cat([d2, edge], -1))
        m = self.msg_out(m) * pair[..., None]  # (B, A, A, W), 0 off the graph
        d2 = d2.squeeze(-1)
        # sqrt(d2 + 1e-12): the diagonal and padding pairs have d2 = 0, where sqrt's gradient is infinite
        w = self.coord(m).squeeze(-1) * pair / ((d2 + 1e-12).sqrt() + 1)  # (B, A, A)
        pos = pos + (diff * w[..., None]).sum(2) * inv_n
        if self.node is not None:
            h = h + self.node(torch.cat([h, m.sum(2) * inv_n], -1))
        return h, pos


class EGNN(nn.Module):
    """x (B, 3, A), c_noise (B,), cond = (atoms (B, A), bonds (B, A, A)) -> (B, 3, A); module docstring."""

    def __init__(self, config: EGNNConfig | None = None):
        super().__init__()
        self.config = c = config or EGNNConfig()
        self.atom_emb = nn.Embedding(c.num_atom_types, c.width)
        self.noise_emb = nn.Sequential(SinusoidalEmbedding(c.width, scale=c.emb_scale), mlp(c.width, c.width, c.width))
        self.blocks = nn.ModuleList(EGNNLayer(c.width, c.num_bond_types, update_h=i < c.layers - 1)
                                    for i in range(c.layers))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond) -> torch.Tensor:
        atoms, bonds = cond
        B, _, A = x.shape
        if atoms.shape != (B, A) or bonds.shape != (B, A, A):
            raise ValueError(f"EGNN: x {tuple(x.shape)} needs atoms ({B}, {A}) and bonds ({B}, {A}, {A}); got "
                             f"{tuple(atoms.shape)} and {tuple(bonds.shape)}")
        real = atoms > 0  # (B, A)
        eye = torch.eye(A, dtype=torch.bool, device=x.device)
        pair = (real[:, :, None] & real[:, None] & ~eye).to(x.dtype)  # (B, A, A) the extended graph
        inv_n = 1 / (real.sum(1) - 1).clamp(min=1).to(x.dtype)[:, None, None]  # (B, 1, 1) 1 / neighbours
        pos0 = torch.where(real[..., None], x.transpose(1, 2), 0)  # (B, A, 3) padding -> 0, whatever it held
        d0 = (pos0[:, :, None] - pos0[:, None]).square().sum(-1, keepdim=True)  # (B, A, A, 1)
        edge = torch.cat([d0, F.one_hot(bonds, self.config.num_bond_types).to(x.dtype)], -1)
        h = self.atom_emb(atoms) + self.noise_emb(c_noise.reshape(B)).to(x.dtype)[:, None]  # (B, A, W)
        h, pos = h * real[..., None], pos0
        for block in self.blocks:
            h, pos = block(h, pos, edge, pair, inv_n)
            h = h * real[..., None]
        return centre((pos - pos0).transpose(1, 2), atoms)  # (B, 3, A)

    @staticmethod
    def project_noise(eps: torch.Tensor, cond) -> torch.Tensor:
        """The forward process's noise projected onto the data's subspace (`centre`): the trainer calls this hook
        of any network that has it, so the loop needs no molecule case."""
        return centre(eps, cond[0])


# size presets (`--model`): tiny for unit tests; small is EGNNConfig's default (the module docstring's timings);
# base is wider and deeper for a long run (cost ~ width^2 x layers: ~4x small's per step)
MOLECULE_PRESETS: dict[str, dict] = {
    "tiny": dict(width=16, layers=2),
    "small": dict(width=64, layers=4),
    "base": dict(width=96, layers=6),
}


def molecule_config(preset: str, **overrides) -> EGNNConfig:
    if preset not in MOLECULE_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {sorted(MOLECULE_PRESETS)}")
    return EGNNConfig(**{**MOLECULE_PRESETS[preset], **overrides})


def centre(x: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """x (B, 3, A) minus its mean over each molecule's real atoms, with padding atoms set to exactly 0: the
    projection onto the zero-mean subspace the data lives in. Apply it to the noise of the forward process and of
    stochastic samplers too (EDM, Hoogeboom et al. 2022, sec. 3.2): a translation-invariant net cannot predict a
    noise component along the centre of mass."""
    real = (atoms > 0)[:, None]  # (B, 1, A)
    x = torch.where(real, x, 0)  # where, not a product: NaN or inf at padding atoms must not spread
    mean = x.sum(2, keepdim=True) / real.sum(2, keepdim=True).clamp(min=1)
    return torch.where(real, x - mean, 0)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["EGNN", "EGNNConfig", "EGNNLayer", "MOLECULE_PRESETS", "centre", "molecule_config", "param_count"]
