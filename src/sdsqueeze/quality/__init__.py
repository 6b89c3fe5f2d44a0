"""Reference-quality metrics: FID and IS (pytorch-fid's Inception), CLIP score (open_clip,
torchmetrics' definition), LPIPS (lpips, AlexNet); weights resolved by ``weights``; statistics
over prompts in ``stats``. See docs/metrics.md for the protocols."""
