"""The text side of text2image: a word-level sentence encoder, the image encoder it is pre-trained against, the
joint-embedding objective that pairs them, and the phrasing noise (dropped and shuffled words) of that
pre-training. Token ids come from :func:`genzoo.data.captions.encode` (0 = padding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TextEncoder(nn.Module):
    """Token ids [B, T] (0 = padding) -> unit-norm sentence embeddings [B, text_dim]: mean of BiGRU states."""

    def __init__(self, words: int, word_dim: int, text_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(words, word_dim, padding_idx=0)
        self.recurrent = nn.GRU(word_dim, word_dim, batch_first=True, bidirectional=True)
        self.output = nn.Linear(2 * word_dim, text_dim)

    def forward(self, tokens: Tensor) -> Tensor:
        mask = (tokens > 0).float()[..., None]  # [B, T, 1]
        states, _ = self.recurrent(self.embedding(tokens))  # [B, T, 2 word_dim]
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(self.output(pooled), dim=1)


class ImageEncoder(nn.Module):
    """Images [B, C, H, W] in [-1, 1] -> unit-norm embeddings [B, text_dim]: the joint objective's image side."""

    def __init__(self, channels: int, width: int, text_dim: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(channels, width // 2, 3, 2, 1),
            nn.ReLU(True),
            nn.Conv2d(width // 2, width, 3, 2, 1),
            nn.ReLU(True),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * width, text_dim),
        )

    def forward(self, images: Tensor) -> Tensor:
        return F.normalize(self.network(images), dim=1)


def joint_embedding_loss(
    image_embeddings: Tensor,
    text_embeddings: Tensor,
    labels: Tensor,
    temperature: float,
    caption_labels: Tensor | None = None,
) -> Tensor:
    """Symmetric softmax over cosine similarities [B, B]; the positives as in :func:`matching_loss`."""
    return matching_loss(image_embeddings @ text_embeddings.T / temperature, labels, caption_labels)


def matching_loss(similarity: Tensor, labels: Tensor, caption_labels: Tensor | None = None) -> Tensor:
    """Symmetric softmax over a [B images, B texts] score matrix.

    Without ``caption_labels`` the pairs with equal label rows are the positives. With them (the texts' label rows,
    -1 for a part a caption leaves open), a text is a positive for an image when every part it names has the
    image's value (``labels``' row, in which -1 marks a part not known, as for an image drawn from a partial
    caption), a negative when a part both name differs, and left out of the softmax otherwise (it names a part the
    image's row leaves open: no one knows whether they match).
    """
    if caption_labels is None:
        positives = (labels[:, None, :] == labels[None, :, :]).all(-1)
        scored = similarity
    else:
        named_image, named_text = labels[:, None, :] >= 0, caption_labels[None, :, :] >= 0  # [B, 1, P], [1, B, P]
        equal = labels[:, None, :] == caption_labels[None, :, :]
        positives = (~named_text | (named_image & equal)).all(-1)
        negatives = (named_image & named_text & ~equal).any(-1)
        scored = similarity.masked_fill(~(positives | negatives), float("-inf"))
    targets = positives.float() / positives.sum(1, keepdim=True)
    image_to_text = -(targets * F.log_softmax(scored, 1).masked_fill(~positives, 0)).sum(1).mean()
    text_to_image = -(targets.T * F.log_softmax(scored.T, 1).masked_fill(~positives.T, 0)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def shuffle_words(tokens: Tensor, generator: torch.Generator) -> Tensor:
    """Token ids [B, T] with each row's words (the non-padding ids) in a random order, padding still last."""
    keys = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    order = torch.where(tokens > 0, keys, 2.0).argsort(1)
    return tokens.gather(1, order)


def drop_words(tokens: Tensor, probability: float, generator: torch.Generator) -> Tensor:
    """Token ids [B, T] with each word (non-padding id) removed with ``probability``, the rest kept in order and
    padded at the end; a row that would lose every word keeps them all."""
    drop = (torch.rand(tokens.shape, generator=generator) < probability).to(tokens.device)
    keep = (tokens > 0) & ~drop
    keep = torch.where(keep.any(1, keepdim=True), keep, tokens > 0)
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    order = torch.where(keep, positions, positions + tokens.shape[1]).argsort(1)
    kept = tokens.gather(1, order)
    return torch.where(positions < keep.sum(1, keepdim=True), kept, 0)
