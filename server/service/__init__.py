"""Use cases (price, Greeks, implied vol, batches, ticking), independent of transport."""
