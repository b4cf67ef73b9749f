"""Training of the physics-informed autoencoder (plain torch loop; Ray wraps it)."""
