"""The limits of one pipeline call, defined once: the pipeline checks them and the app's settings start from them."""

MAX_PROMPT_CHARS = 1000
MAX_STEPS = 150
MAX_IMAGES = 8
MAX_GUIDANCE = 30.0
# Seeds stay in the unsigned 32-bit range other demos use, so a seed copied from one works in the other.
MAX_SEED = 2**32 - 1

# The pipeline's call defaults (25 DDIM steps, CFG 2.0: chosen on validation prompts, see the model card); the
# evaluators, the loop and the benchmarks start from the same values as a page without a version's own defaults.
DEFAULT_INFERENCE_STEPS = 25
DEFAULT_GUIDANCE_SCALE = 2.0
