"""Acceleration techniques and real low-bit kernels, each applied to a freshly
loaded pipeline by ``sdsqueeze.accel.techniques.apply_acceleration`` from a variant's keys."""


def apply_acceleration(prepared) -> None:
    """TECHNIQUES entry; imports torch/diffusers only when a variant is prepared (not at DAG parse)."""
    from .techniques import apply_acceleration as apply

    apply(prepared)
