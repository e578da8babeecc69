"""pricegrid.clients: front-office and risk clients, CLI."""
