"""Quantized attention matmuls (Q-Diffusion's ``--quant_act`` on QK^T and softmax·V).

A diffusers attention processor, installed with ``set_attn_processor`` on every attention of the
UNet: the operands of both matmuls are fake-quantized per tensor — q and k (of QK^T) and v at
``act_bits``, the softmax output (the other operand of softmax·V) at ``softmax_bits`` (default 8,
Q-Diffusion's ``sm_abit``). The softmax itself is computed in full precision, as Q-Diffusion
does. Ranges are calibrated with the layers' own (min-max or MSE search, ``ActQuantizer``).

Why a processor written here: diffusers has no hook between QK^T, the softmax and the product
with V; this mirrors its classic ``AttnProcessor`` (same steps, same order) with the quantizers
inserted, so nothing in diffusers is patched.
"""

from __future__ import annotations

import torch


class QuantAttnProcessor:
    """diffusers' classic attention with fake-quantized q, k, v and attention probabilities."""

    def __init__(self, act_bits: int, softmax_bits: int, grid: int, make_quantizer):
        # make_quantizer is ptq.ActQuantizer, passed in so that this module does not import ptq
        # (ptq imports this one: no import cycle).
        self.quantizers = {"q": make_quantizer(act_bits, None, grid), "k": make_quantizer(act_bits, None, grid),
                           "v": make_quantizer(act_bits, None, grid),
                           "softmax": make_quantizer(softmax_bits, None, grid)}

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        quant = self.quantizers
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (hidden_states.shape if encoder_hidden_states is None
                                          else encoder_hidden_states.shape)
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        query = quant["q"].apply(attn.head_to_batch_dim(query))
        key = quant["k"].apply(attn.head_to_batch_dim(key))
        value = quant["v"].apply(attn.head_to_batch_dim(value))
        probs = quant["softmax"].apply(attn.get_attention_scores(query, key, attention_mask))
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))

        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))  # projection, dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def attach_attention_quantizers(unet, spec, make_quantizer) -> dict:
    """Install a QuantAttnProcessor on every attention; name -> quantizer for calibration."""
    make = lambda: QuantAttnProcessor(spec.act_bits, spec.softmax_bits, spec.search_grid, make_quantizer)  # noqa: E731
    if hasattr(unet, "attn_processors"):
        processors = {name: make() for name in unet.attn_processors}
        unet.set_attn_processor(dict(processors))  # diffusers pops the entries of the dict it is given
    else:  # UNet2DModel (unconditional pipelines): each Attention module is set on its own
        from ..accel.attention import attention_layers

        processors = {}
        for name, attn in attention_layers(unet).items():
            processors[f"{name}.processor"] = make()
            attn.set_processor(processors[f"{name}.processor"])
    return {f"{name.removesuffix('.processor')}.{operand}": quantizer
            for name, processor in processors.items() for operand, quantizer in processor.quantizers.items()}
