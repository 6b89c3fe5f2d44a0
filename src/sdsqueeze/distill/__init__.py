"""Students trained from the configured model: guided progressive distillation, consistency
distillation (LCM-style) and a block-removed UNet (BK-SDM), on cached teacher data."""
