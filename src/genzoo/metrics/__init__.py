"""Measures shared by all models: likelihoods in nats and bits/dim (and, with later families, sample metrics)."""
