"""Recording datasets by acting in the environments: behaviour policies (NumPy actors, the
shipped Hopper one under behavior/), collection into RLDS, and the `cql_sac_make_dataset` and
`cql_sac_make_behavior` commands."""
