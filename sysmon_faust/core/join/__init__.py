"""The join's semantics and its engine: grace, expiry, parking, alert groups, over a store."""
