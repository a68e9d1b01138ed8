"""RLDS datasets on disk and in replay: loading (TFDS, D4RL HDF5), the RLDS writer and format,
steps and 2-step transition items, validation, normalization statistics, returns-to-go,
the Reverb and in-memory replay, and the online episodes of fine-tuning."""
