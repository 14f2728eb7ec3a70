"""Vision encoders (ResNet, DINOv2, SigLIP, CLIP, MAE, fused DINOv2+SigLIP) built through transformers,
shared by every policy. Arrive with the encoder issue; registered by name like envs."""
