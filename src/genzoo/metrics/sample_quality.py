"""One sample-quality suite for every sampler in genzoo, computed in a feature space.

- Fréchet distance (Heusel et al. 2017, the "FID" formula) between Gaussians fitted to real and generated
  features: |mu_a - mu_b|^2 + tr(A) + tr(B) - 2 tr((A B)^{1/2}). The trace of the matrix square root is taken as
  tr((A^{1/2} B A^{1/2})^{1/2}), which has the same eigenvalues as (A B)^{1/2} but is symmetric positive
  semi-definite, so a symmetric eigendecomposition gives it exactly (no complex round-off, unlike a general sqrtm).
- KID (Bińkowski et al. 2018): the unbiased MMD^2 estimate with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random subsets; its expectation is 0 for equal distributions.
- Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls reaching each point's
  k-th nearest neighbour (k=3); precision is the share of generated points inside the real manifold, recall the
  share of real points inside the generated one. Computed on equal numbers of real and generated points (a random
  subset of the larger set).
- An Inception-Score analogue (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) with the feature net's classes.
- Categorical-code accuracy: the best one-to-one matching of codes to labels (Hungarian, scipy).
- Standard FID when the user supplies Inception weights: a TorchScript Inception-v3 file (the
  ``inception-2015-12-05.pt`` used by clean-fid and StyleGAN3's metrics), called with ``return_features=True`` on
  [N, 3, 299, 299] images in [0, 255]; the same Fréchet code then gives the usual FID.

Every report states the feature net and the numbers of real and generated samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genzoo.errors import GenzooError

NEAREST_NEIGHBOURS = 3
KID_SUBSETS = 50  # the paper uses 100 subsets of 1000; 50 halve the cost and keep the std over subsets small
KID_SUBSET_SIZE = 1000
SCORE_SPLITS = 10


def _symmetric_sqrt(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    mean_a, cov_a, mean_b, cov_b = (t.double() for t in (mean_a, cov_a, mean_b, cov_b))
    root_a = _symmetric_sqrt(cov_a)
    cross = root_a @ cov_b @ root_a
    trace_sqrt = torch.linalg.eigvalsh((cross + cross.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return float(distance.clamp(min=0))


def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [D] and unbiased covariance [D, D] of features [N, D]."""
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def frechet_distance_of_features(features_a: Tensor, features_b: Tensor) -> float:
    return frechet_distance(*gaussian_statistics(features_a), *gaussian_statistics(features_b))


def _polynomial_kernel(a: Tensor, b: Tensor) -> Tensor:
    """(a.b / d + 1)^3 in float32 (entries need no more); callers sum in float64."""
    k = torch.addmm(torch.ones(()), a.float(), b.float().T, alpha=1.0 / a.shape[1])
    return k * k * k


def kernel_inception_distance(
    features_a: Tensor,
    features_b: Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Unbiased MMD^2 (cubic polynomial kernel) averaged over random subsets: (mean, std over subsets)."""
    m = min(subset_size, len(features_a), len(features_b))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    estimates = []
    for _ in range(subsets):
        a = features_a[torch.randperm(len(features_a), generator=generator)[:m]]
        b = features_b[torch.randperm(len(features_b), generator=generator)[:m]]
        k_aa, k_bb, k_ab = _polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b)
        off_diagonal = [k.sum(dtype=torch.float64) - k.diagonal().sum(dtype=torch.float64) for k in (k_aa, k_bb)]
        within = sum(off_diagonal) / (m * (m - 1))
        estimates.append(float(within - 2 * k_ab.sum(dtype=torch.float64) / m**2))
    values = np.array(estimates)
    return float(values.mean()), float(values.std())


def _kth_neighbour_radii(features: Tensor, k: int, chunk: int = 2000) -> Tensor:
    """Distance from each point to its k-th nearest other point in the same set, [N]."""
    radii = [torch.cdist(part, features).topk(k + 1, largest=False).values[:, k] for part in features.split(chunk)]
    return torch.cat(radii)


def _inside_manifold(points: Tensor, centres: Tensor, radii: Tensor, chunk: int = 2000) -> Tensor:
    """For each point, whether it lies within some centre's ball, [N] bool."""
    return torch.cat([(torch.cdist(part, centres) <= radii).any(1) for part in points.split(chunk)])


def precision_recall(real: Tensor, generated: Tensor, k: int = NEAREST_NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall of ``generated`` against ``real`` features (k-NN manifolds)."""
    real, generated = real.double(), generated.double()
    precision = _inside_manifold(generated, real, _kth_neighbour_radii(real, k)).double().mean()
    recall = _inside_manifold(real, generated, _kth_neighbour_radii(generated, k)).double().mean()
    return float(precision), float(recall)


def inception_score(
    probabilities: Tensor, splits: int = SCORE_SPLITS, generator: torch.Generator | None = None
) -> tuple[float, float]:
    """exp(E KL(p(y|x) || p(y))) per random split of class probabilities [N, K]: (mean, std over splits).

    Splits are drawn at random: a set ordered by class (like a sorted test set) would otherwise give each split
    one class and a score near 1."""
    scores = []
    order = torch.randperm(len(probabilities), generator=generator)
    for part in probabilities.double()[order].chunk(splits):
        marginal = part.mean(0, keepdim=True)
        kl = (part * (part.clamp(min=1e-30).log() - marginal.clamp(min=1e-30).log())).sum(1)
        scores.append(float(kl.mean().exp()))
    values = np.array(scores)
    return float(values.mean()), float(values.std())


def code_accuracy(codes: Tensor, labels: Tensor) -> float:
    """Accuracy of categorical codes as label predictions under the best one-to-one code -> label matching."""
    codes, labels = codes.long().cpu(), labels.long().cpu()
    size = int(max(codes.max(), labels.max())) + 1
    counts = torch.zeros(size, size, dtype=torch.long)
    counts.index_put_((codes, labels), torch.ones_like(codes), accumulate=True)  # [code, label]
    from scipy.optimize import linear_sum_assignment  # imported here: scipy.optimize costs ~1 s to import

    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    return float(counts.numpy()[rows, cols].sum() / len(codes))


def sample_quality(
    generated: Tensor,
    real: Tensor,
    data: str,
    inception_weights: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The suite for images in [0, 1] [N, C, H, W], in the feature space of ``data``'s shipped feature net."""
    from genzoo.metrics.features import load_feature_net

    feature_net = load_feature_net(data)
    generator = torch.Generator().manual_seed(seed)
    real_features, real_probabilities = feature_net.features_and_probabilities(real)
    fake_features, fake_probabilities = feature_net.features_and_probabilities(generated)
    paired = min(len(real), len(generated))
    kid, kid_std = kernel_inception_distance(real_features, fake_features, generator=generator)
    precision, recall = precision_recall(
        real_features[torch.randperm(len(real), generator=generator)[:paired]],
        fake_features[torch.randperm(len(generated), generator=generator)[:paired]],
    )
    report: dict[str, Any] = {
        "feature_net": feature_net.name,
        "feature_net_test_accuracy": feature_net.card["test_accuracy"],
        "real_samples": len(real),
        "generated_samples": len(generated),
        "frechet_distance": frechet_distance_of_features(real_features, fake_features),
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "precision_recall_k": NEAREST_NEIGHBOURS,
        "precision_recall_samples": paired,
    }
    if not feature_net.multi_label:  # the score needs one class per image; attribute nets (celeba) have none
        score, score_std = inception_score(fake_probabilities, generator=generator)
        report.update(
            inception_score_analogue=score,
            inception_score_analogue_std=score_std,
            real_inception_score_analogue=inception_score(real_probabilities, generator=generator)[0],
        )
    if inception_weights is not None:
        report.update(standard_fid(generated, real, inception_weights))
    return report


def _load_inception(path: str | Path) -> torch.jit.ScriptModule:
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenzooError(f"Inception weights {path} do not exist")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as err:
        raise GenzooError(f"{path} is not a TorchScript Inception file: {str(err).splitlines()[0]}") from None


@torch.no_grad()
def inception_features(images: Tensor, weights: str | Path, batch_size: int = 100) -> Tensor:
    """2048-d pool features of images in [0, 1] [N, C, H, W] from a TorchScript Inception-v3."""
    network = _load_inception(weights)
    features = []
    for chunk in images.float().split(batch_size):
        rgb = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
        resized = F.interpolate(rgb * 255, size=(299, 299), mode="bilinear", align_corners=False)
        features.append(network(resized, return_features=True).flatten(1).double())
    return torch.cat(features)


def standard_fid(generated: Tensor, real: Tensor, weights: str | Path) -> dict[str, Any]:
    """FID with user-supplied Inception weights (images in [0, 1])."""
    distance = frechet_distance_of_features(inception_features(real, weights), inception_features(generated, weights))
    return {"fid": distance, "fid_feature_net": f"inception-v3 ({Path(weights).name})"}
