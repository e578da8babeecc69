"""pricegrid.server: domain, pricers, service, transport and app layers."""
