"""D4RL datasets in RLDS/TFDS form: registry, loading, writing, validation, Reverb replay."""
