"""The limits of one pipeline call, defined once: the pipeline checks them and the app's settings start from them."""

MAX_PROMPT_CHARS = 1000
MAX_STEPS = 150
MAX_IMAGES = 8
MAX_GUIDANCE = 30.0
# Seeds stay in the unsigned 32-bit range other demos use, so a seed copied from one works in the other.
MAX_SEED = 2**32 - 1
