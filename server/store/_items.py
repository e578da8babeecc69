"""The named-item protocols (PortfolioStore, ScenarioSetStore) over a backend's five
table operations, shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

from typing import Optional

from pricegrid.server.domain.portfolios import StoredPortfolio, StoredScenarioSet

#: each named-item table's columns (all but content) and its record type
ITEMS = {"portfolios": ("id, name, description, stored_at, books, trades", StoredPortfolio),
         "scenario_sets": ("id, name, description, stored_at, scenarios, components", StoredScenarioSet)}


class NamedItems:
    """Portfolios and scenario sets, each a table of ITEMS, through the backend's
    ``_put_item``, ``_get_item``, ``_latest_item``, ``_list_items`` and ``_delete_item``."""

    def put_portfolio(self, record: StoredPortfolio) -> bool:
        return self._put_item("portfolios", record)

    def get_portfolio(self, portfolio_id: str) -> Optional[StoredPortfolio]:
        return self._get_item("portfolios", portfolio_id)

    def latest_portfolio(self, name: str) -> Optional[StoredPortfolio]:
        return self._latest_item("portfolios", name)

    def list_portfolios(self, name: str = "", limit: int = 100):
        return self._list_items("portfolios", name, limit)

    def delete_portfolio(self, portfolio_id: str) -> bool:
        return self._delete_item("portfolios", portfolio_id)

    def put_scenario_set(self, record: StoredScenarioSet) -> bool:
        return self._put_item("scenario_sets", record)

    def get_scenario_set(self, set_id: str) -> Optional[StoredScenarioSet]:
        return self._get_item("scenario_sets", set_id)

    def latest_scenario_set(self, name: str) -> Optional[StoredScenarioSet]:
        return self._latest_item("scenario_sets", name)

    def list_scenario_sets(self, name: str = "", limit: int = 100):
        return self._list_items("scenario_sets", name, limit)

    def delete_scenario_set(self, set_id: str) -> bool:
        return self._delete_item("scenario_sets", set_id)
