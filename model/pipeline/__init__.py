"""Inference: RaphaelPipeline and what it needs (text encoder, schedule, samplers, aspect buckets, the bundle)."""
