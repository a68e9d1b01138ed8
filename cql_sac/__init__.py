"""cql-sac: Conservative Q-Learning (Kumar et al. 2020) for continuous control on TF-Agents."""

__version__ = "0.1.0"
