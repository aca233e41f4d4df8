"""How a model computes its loss: the engine plan, chosen once from `engine` and `padding_outputs`, so that
model files read like the equations and never test the settings themselves.

Both engines compute the same losses (tests/test_engine.py checks it in float64, dropout off):
  fast       one encoder pass over a batch's rows and both augmented views; the intent CL reuses that pass;
             dropout masks from a few random bits; outputs that are zero by definition never computed (rows
             encoded in groups of similar span, see TransformerEncoder.forward_by_span); LLM-ESR distils
             towards a table of user representations made at the start of each epoch.
  reference  the reference code's order: one pass for the rows, the views drawn after it, one pass for them,
             one more for the intent CL with fresh dropout; torch's dropout; LLM-ESR encodes every neighbour
             at every step.
Outputs before a sequence's first item are zero when the model's loss never reads them (SASRec, BERT4Rec) or
when padding_outputs=zero (a deviation of the contrastive models, whose faithful losses read them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .transformer import TransformerEncoder, started

if TYPE_CHECKING:
    from ..config import Config


@dataclass(frozen=True)
class EnginePlan:
    fast: bool  # engine=fast
    zero_padding: bool  # outputs before each row's first item are zero

    @classmethod
    def of(cls, config: Config, reads_padding: bool = False) -> EnginePlan:
        """The plan for a model whose faithful loss reads padding outputs (`reads_padding`) or not."""
        return cls(fast=config.engine == "fast", zero_padding=not reads_padding or config.padding_outputs == "zero")

    @property
    def by_span(self) -> bool:
        """Whether zero outputs are skipped rather than computed and zeroed."""
        return self.fast and self.zero_padding

    def outputs(self, encoder: TransformerEncoder, inputs: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, L, d]: the encoder's output at every position (zero before each row's first item
        when `zero_padding`)."""
        if self.by_span:
            return encoder.forward_by_span(inputs)
        h = encoder(inputs)
        return h.masked_fill(~started(inputs)[..., None], 0.0) if self.zero_padding else h

    def rows_and_views(
        self,
        encode: Callable[[torch.Tensor], torch.Tensor],
        inputs: torch.Tensor,
        draw_views: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, ...]:
        """(outputs of the rows [B, L, d], their two augmented views [2B, L], the views' outputs [2B, L, d])."""
        if not self.fast:  # the reference draws the views after encoding the rows
            h = encode(inputs)
            views = draw_views(inputs)
            return h, views, encode(views)
        views = draw_views(inputs)
        h, out = encode(torch.cat([inputs, views])).split([len(inputs), len(views)])
        return h, views, out

    def intent_view_outputs(
        self, encode: Callable[[torch.Tensor], torch.Tensor], views: torch.Tensor, out: torch.Tensor
    ) -> torch.Tensor:
        """The views' outputs the intent CL reads: encoded again, with fresh dropout, by the reference."""
        return out if self.fast else encode(views)

    def spans(self, views: torch.Tensor) -> torch.Tensor | None:
        """Each view's span of non-zero outputs, for comparing flattened outputs over them only (or None)."""
        return started(views).sum(1) if self.by_span else None

    def at_items(
        self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, inputs: torch.Tensor
    ) -> torch.Tensor:
        """fn over the positions of x [B, L, d] (rows of [N, d] in, [N, d'] out) -> [B, L, d']; zero before each
        row's first item of `inputs` when `zero_padding` (there fn runs only from the first item on)."""
        if not self.zero_padding:
            return fn(x.flatten(0, 1)).view(*x.shape[:2], -1)
        begun = started(inputs)
        if not self.by_span:
            return fn(x.flatten(0, 1)).view(*x.shape[:2], -1).masked_fill(~begun[..., None], 0.0)
        at = begun.flatten().nonzero().squeeze(1)
        values = fn(x.flatten(0, 1).index_select(0, at))
        return (
            values.new_zeros(x.shape[0] * x.shape[1], values.shape[1]).index_copy(0, at, values).view(*x.shape[:2], -1)
        )
